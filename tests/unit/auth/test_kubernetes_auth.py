"""The kubernetes auth method against an in-process TokenReview endpoint (httpx.MockTransport).

The mock plays the Kubernetes API server: it verifies the JWT's RS256 signature with the
"cluster's" key, checks expiry and audiences like the real TokenReview, and answers with
the service account it names. Tests then drive config/role/login through the real app.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from strongroom.auth.kubernetes import (
    KubernetesBackend,
    ServiceAccount,
    glob_match,
    parse_namespace_selector,
    selector_matches,
)
from strongroom.testing import Harness, running_core

HOST = "https://k8s.test:6443"
ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    CLUSTER_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
UIDS: dict[tuple[str, str], str] = {}


def sa_uid(ns: str, sa: str) -> str:
    return UIDS.setdefault((ns, sa), str(uuid.uuid4()))


def make_jwt(
    ns: str = "default",
    sa: str = "vault-auth",
    aud: list[str] | None = None,
    exp_in: int = 3600,
    key: rsa.RSAPrivateKey = CLUSTER_KEY,
    legacy: bool = False,
) -> str:
    """A service-account token shaped like the API server's (projected, or a legacy secret token)."""
    now = int(time.time())
    claims: dict[str, Any]
    if legacy:
        claims = {
            "iss": "kubernetes/serviceaccount",
            "sub": f"system:serviceaccount:{ns}:{sa}",
            "kubernetes.io/serviceaccount/namespace": ns,
            "kubernetes.io/serviceaccount/secret.name": f"{sa}-token-abcde",
            "kubernetes.io/serviceaccount/service-account.name": sa,
            "kubernetes.io/serviceaccount/service-account.uid": sa_uid(ns, sa),
        }
    else:
        claims = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{ns}:{sa}",
            "aud": aud if aud is not None else ["https://kubernetes.default.svc"],
            "iat": now,
            "nbf": now,
            "exp": now + exp_in,
            "kubernetes.io": {
                "namespace": ns,
                "pod": {"name": "app-0", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": sa, "uid": sa_uid(ns, sa)},
            },
        }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "cluster"})


class MockKubeAPI:
    """TokenReview, namespaces and service accounts, as much as the auth method uses."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.namespace_labels: dict[str, dict[str, str]] = {"labelled": {"vault": "yes"}}
        self.annotations: dict[str, str] = {}
        self.down = False
        self.force: dict[str, Any] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.host != "k8s.test":
            return httpx.Response(404)
        if request.url.path == "/apis/authentication.k8s.io/v1/tokenreviews" and request.method == "POST":
            body = json.loads(request.content)
            self.bodies.append(body)
            return httpx.Response(201, json=self.review(body))
        parts = request.url.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4:
            labels = self.namespace_labels.get(parts[3])
            if labels is None:
                return httpx.Response(
                    404, json={"kind": "Status", "status": "Failure", "message": "not found"}
                )
            return httpx.Response(
                200, json={"kind": "Namespace", "metadata": {"name": parts[3], "labels": labels}}
            )
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "serviceaccounts":
            return httpx.Response(
                200,
                json={
                    "kind": "ServiceAccount",
                    "metadata": {"name": parts[5], "annotations": self.annotations},
                },
            )
        return httpx.Response(404)

    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
        if self.force is not None:
            out["status"] = self.force
            return out
        token = body["spec"]["token"]
        wanted = body["spec"].get("audiences") or []
        try:
            claims = jwt.decode(
                token, CLUSTER_KEY.public_key(), algorithms=["RS256"], options={"verify_aud": False}
            )
        except jwt.PyJWTError as err:
            out["status"] = {"authenticated": False, "error": f"invalid bearer token: {type(err).__name__}"}
            return out
        aud = claims.get("aud") or ["https://kubernetes.default.svc"]
        granted = [a for a in wanted if a in aud] if wanted else aud
        if wanted and not granted:
            out["status"] = {
                "authenticated": False,
                "error": "token audiences is invalid for the target audiences",
            }
            return out
        sa = ServiceAccount.from_claims(claims)
        out["status"] = {
            "authenticated": True,
            "user": {
                "username": f"system:serviceaccount:{sa.namespace}:{sa.name}",
                "uid": sa.uid,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa.namespace}"],
            },
            "audiences": granted,
        }
        return out


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> MockKubeAPI:
    mock = MockKubeAPI()
    monkeypatch.setattr(KubernetesBackend, "transport", httpx.MockTransport(mock))
    monkeypatch.setattr(KubernetesBackend, "local_ca_cert_path", "/nonexistent/ca.crt")
    monkeypatch.setattr(KubernetesBackend, "local_jwt_path", "/nonexistent/token")
    return mock


@pytest.fixture
async def h(kube: MockKubeAPI) -> AsyncIterator[Harness]:
    async with running_core() as harness:
        r = await harness.call("POST", "sys/auth/kubernetes", json={"type": "kubernetes"})
        assert r.status_code == 204, r.text
        r = await harness.call("POST", "auth/kubernetes/config", json={"kubernetes_host": HOST})
        assert r.status_code == 204, r.text
        r = await harness.call(
            "POST",
            "auth/kubernetes/role/app",
            json={
                "bound_service_account_names": ["vault-auth", "web-*"],
                "bound_service_account_namespaces": "default,team-*",
                "token_policies": ["app-read"],
                "token_ttl": "1h",
            },
        )
        assert r.status_code == 200, r.text  # a warning: no audience
        yield harness


async def login(h: Harness, role: str, token: str) -> httpx.Response:
    return await h.client.post("/v1/auth/kubernetes/login", json={"role": role, "jwt": token})


# -- config ----------------------------------------------------------------------------------


async def test_config_roundtrip_never_returns_reviewer_jwt(h: Harness) -> None:
    reviewer = make_jwt(sa="token-reviewer")
    r = await h.call(
        "POST",
        "auth/kubernetes/config",
        json={
            "kubernetes_host": HOST,
            "kubernetes_ca_cert": "-----BEGIN CERTIFICATE-----\\n.....\\n-----END CERTIFICATE-----",
            "token_reviewer_jwt": reviewer,
            "pem_keys": [PUBLIC_PEM],
            "issuer": "bob",
        },
    )
    assert r.status_code == 204, r.text
    r = await h.call("GET", "auth/kubernetes/config")
    data = r.json()["data"]
    assert data["kubernetes_host"] == HOST
    assert data["issuer"] == "bob"
    assert data["pem_keys"] == [PUBLIC_PEM.strip()]  # a comma list: items are trimmed, as in Vault
    assert data["disable_local_ca_jwt"] is False
    assert data["disable_iss_validation"] is True
    assert data["token_reviewer_jwt_set"] is True
    assert reviewer not in r.text and "token_reviewer_jwt" not in data


async def test_config_errors(h: Harness) -> None:
    r = await h.call("POST", "auth/kubernetes/config", json={"kubernetes_ca_cert": "x"})
    assert r.status_code == 400 and r.json()["errors"] == ["no host provided"]
    r = await h.call(
        "POST", "auth/kubernetes/config", json={"kubernetes_host": HOST, "disable_local_ca_jwt": True}
    )
    assert r.status_code == 400
    assert r.json()["errors"] == ["kubernetes_ca_cert must be given when disable_local_ca_jwt is true"]
    r = await h.call(
        "POST", "auth/kubernetes/config", json={"kubernetes_host": HOST, "pem_keys": ["pem_key"]}
    )
    assert r.status_code == 400
    assert r.json()["errors"] == ["data does not contain any valid RSA or ECDSA public keys"]


async def test_config_read_before_write_is_404(kube: MockKubeAPI) -> None:
    async with running_core() as h:
        await h.call("POST", "sys/auth/kubernetes", json={"type": "kubernetes"})
        r = await h.call("GET", "auth/kubernetes/config")
        assert r.status_code == 404


# -- roles -----------------------------------------------------------------------------------


async def test_role_crud_and_list(h: Harness) -> None:
    r = await h.call(
        "POST",
        "auth/kubernetes/role/Other",
        json={
            "bound_service_account_names": "*",
            "bound_service_account_namespaces": "*",
            "audience": "vault",
            "alias_name_source": "serviceaccount_name",
            "policies": "a,b",
            "ttl": 60,
            "num_uses": 3,
        },
    )
    assert r.status_code == 204, r.text
    data = (await h.call("GET", "auth/kubernetes/role/other")).json()["data"]
    assert data["bound_service_account_names"] == ["*"]
    assert data["bound_service_account_namespaces"] == ["*"]
    assert data["bound_service_account_namespace_selector"] == ""
    assert data["audience"] == "vault"
    assert data["alias_name_source"] == "serviceaccount_name"
    assert data["token_policies"] == ["a", "b"] and data["policies"] == ["a", "b"]
    assert data["token_ttl"] == 60 and data["ttl"] == 60
    assert data["token_num_uses"] == 3 and data["num_uses"] == 3
    app = (await h.call("GET", "auth/kubernetes/role/app")).json()["data"]
    assert app["alias_name_source"] == "serviceaccount_uid" and "audience" not in app
    assert app["token_ttl"] == 3600
    r = await h.client.request("LIST", "/v1/auth/kubernetes/role", headers=h.headers())
    assert r.json()["data"]["keys"] == ["app", "other"]
    # an update keeps what it does not send
    r = await h.call("POST", "auth/kubernetes/role/other", json={"token_ttl": 120})
    assert r.status_code == 204
    data = (await h.call("GET", "auth/kubernetes/role/other")).json()["data"]
    assert data["bound_service_account_names"] == ["*"] and data["token_ttl"] == 120
    assert (await h.call("DELETE", "auth/kubernetes/role/other")).status_code == 204
    assert (await h.call("GET", "auth/kubernetes/role/other")).status_code == 404
    assert (await h.call("DELETE", "auth/kubernetes/role/other")).status_code == 204


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"bound_service_account_namespaces": ["default"]}, '"bound_service_account_names" can not be empty'),
        (
            {"bound_service_account_names": ["a", "*"], "bound_service_account_namespaces": ["x"]},
            'can not mix "*"',
        ),
        (
            {"bound_service_account_names": ["a"]},
            '"bound_service_account_namespaces" can not be empty if "bound_service_account_namespace_selector"',
        ),
        (
            {"bound_service_account_names": ["a"], "bound_service_account_namespaces": ["*", "x"]},
            'can not mix "*"',
        ),
        (
            {"bound_service_account_names": ["a"], "bound_service_account_namespace_selector": "[1, 2"},
            'invalid "bound_service_account_namespace_selector" configured',
        ),
        (
            {
                "bound_service_account_names": ["a"],
                "bound_service_account_namespaces": ["x"],
                "alias_name_source": "z",
            },
            "invalid alias_name_source",
        ),
    ],
)
async def test_role_validation(h: Harness, body: dict[str, Any], error: str) -> None:
    r = await h.call("POST", "auth/kubernetes/role/bad", json=body)
    assert r.status_code == 400, r.text
    assert error in r.json()["errors"][0]
    assert (await h.call("GET", "auth/kubernetes/role/bad")).status_code == 404


# -- login -----------------------------------------------------------------------------------


async def test_login_projected_token(h: Harness, kube: MockKubeAPI) -> None:
    token = make_jwt(ns="team-a", sa="web-frontend")
    r = await login(h, "app", token)
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    uid = sa_uid("team-a", "web-frontend")
    assert auth["metadata"] == {
        "role": "app",
        "service_account_name": "web-frontend",
        "service_account_namespace": "team-a",
        "service_account_secret_name": "",
        "service_account_uid": uid,
    }
    assert auth["policies"] == ["app-read", "default"]
    assert auth["lease_duration"] == 3600
    # the TokenReview: the client's own JWT as bearer (no reviewer configured), its audiences asked for
    request, body = kube.requests[-1], kube.bodies[-1]
    assert request.headers["authorization"] == "Bearer " + token
    assert body == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["https://kubernetes.default.svc"]},
    }
    # the alias is the service account's uid; the token works
    lookup = await h.call("GET", "auth/token/lookup-self", token=auth["client_token"])
    assert lookup.status_code == 200
    assert lookup.json()["data"]["display_name"] == "kubernetes-team-a-web-frontend"
    entity = await h.call("GET", f"identity/entity/id/{auth['entity_id']}")
    if entity.status_code == 200:
        assert entity.json()["data"]["aliases"][0]["name"] == uid


async def test_login_legacy_secret_token_and_reviewer_jwt(h: Harness, kube: MockKubeAPI) -> None:
    reviewer = make_jwt(ns="kube-system", sa="token-reviewer")
    r = await h.call(
        "POST", "auth/kubernetes/config", json={"kubernetes_host": HOST, "token_reviewer_jwt": reviewer}
    )
    assert r.status_code == 204
    r = await h.call(
        "POST",
        "auth/kubernetes/role/named",
        json={
            "bound_service_account_names": "vault-auth",
            "bound_service_account_namespaces": "default",
            "alias_name_source": "serviceaccount_name",
        },
    )
    token = make_jwt(legacy=True)
    r = await login(h, "named", token)
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["metadata"]["service_account_secret_name"] == "vault-auth-token-abcde"
    assert kube.requests[-1].headers["authorization"] == "Bearer " + reviewer
    assert "audiences" not in kube.bodies[-1]["spec"]


async def test_login_refusals(h: Harness, kube: MockKubeAPI) -> None:
    token = make_jwt()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"jwt": token}, 400, "missing role"),
        ({"role": "app"}, 400, "missing jwt"),
        ({"role": "nope", "jwt": token}, 400, 'invalid role name "nope"'),
        ({"role": "app", "jwt": make_jwt(sa="intruder")}, 403, "service account name not authorized"),
        ({"role": "app", "jwt": make_jwt(ns="kube-system")}, 403, "namespace not authorized"),
        ({"role": "app", "jwt": make_jwt(exp_in=-3600)}, 403, "token is expired"),
        ({"role": "app", "jwt": "not-a-jwt"}, 403, "permission denied"),
        ({"role": "app", "jwt": make_jwt(key=OTHER_KEY)}, 403, "permission denied"),  # the review says no
    ]
    for body, status, message in cases:
        r = await h.client.post("/v1/auth/kubernetes/login", json=body)
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["errors"][0], (body, r.text)
        if "jwt" in body:
            assert body["jwt"] not in r.text
    # the claims checks refuse before anything is sent to the cluster
    assert len(kube.bodies) == 1


async def test_login_audience(h: Harness, kube: MockKubeAPI) -> None:
    r = await h.call(
        "POST",
        "auth/kubernetes/role/aud",
        json={
            "bound_service_account_names": "*",
            "bound_service_account_namespaces": "default",
            "audience": "vault",
        },
    )
    assert r.status_code == 204, r.text
    r = await login(h, "aud", make_jwt(aud=["https://kubernetes.default.svc"]))
    assert r.status_code == 403
    assert "invalid audience (aud) claim" in r.json()["errors"][0]
    assert not kube.bodies
    r = await login(h, "aud", make_jwt(aud=["vault", "other"]))
    assert r.status_code == 200, r.text
    assert kube.bodies[-1]["spec"]["audiences"] == ["vault"]
    # a review granting other audiences than asked is refused
    kube.force = {
        "authenticated": True,
        "user": {
            "username": "system:serviceaccount:default:vault-auth",
            "uid": sa_uid("default", "vault-auth"),
        },
        "audiences": ["other"],
    }
    r = await login(h, "aud", make_jwt(aud=["vault"]))
    assert r.status_code == 403


@pytest.mark.parametrize(
    "status",
    [
        {"authenticated": False},
        {
            "authenticated": True,
            "error": "boom",
            "user": {"username": "system:serviceaccount:default:vault-auth"},
        },
        {
            "authenticated": True,
            "user": {"username": "system:serviceaccount:default:someone-else", "uid": "x"},
        },
        {
            "authenticated": True,
            "user": {"username": "system:serviceaccount:default:vault-auth", "uid": "other"},
        },
        {"authenticated": True, "user": {"username": "admin", "uid": "x"}},
        {"authenticated": True, "user": {"username": "system:node:default:vault-auth", "uid": "x"}},
    ],
)
async def test_login_review_must_agree(h: Harness, kube: MockKubeAPI, status: dict[str, Any]) -> None:
    kube.force = status
    r = await login(h, "app", make_jwt())
    assert r.status_code == 403 and "permission denied" in r.json()["errors"][0]


async def test_login_api_unreachable_is_403(h: Harness, kube: MockKubeAPI) -> None:
    kube.down = True
    token = make_jwt()
    r = await login(h, "app", token)
    assert r.status_code == 403 and token not in r.text


async def test_login_without_config(kube: MockKubeAPI) -> None:
    async with running_core() as h:
        await h.call("POST", "sys/auth/kubernetes", json={"type": "kubernetes"})
        await h.call(
            "POST",
            "auth/kubernetes/role/r",
            json={"bound_service_account_names": "*", "bound_service_account_namespaces": "*"},
        )
        r = await login(h, "r", make_jwt())
        assert r.status_code == 400 and r.json()["errors"] == ["could not load backend configuration"]


async def test_login_with_pem_keys_verifies_signature(h: Harness, kube: MockKubeAPI) -> None:
    r = await h.call("POST", "auth/kubernetes/config", json={"kubernetes_host": HOST, "pem_keys": PUBLIC_PEM})
    assert r.status_code == 204, r.text
    assert (await login(h, "app", make_jwt())).status_code == 200
    kube.bodies.clear()
    r = await login(h, "app", make_jwt(key=OTHER_KEY))
    assert r.status_code == 403 and "permission denied" in r.json()["errors"][0]
    assert not kube.bodies  # refused locally


async def test_login_issuer_when_validation_enabled(h: Harness) -> None:
    r = await h.call(
        "POST",
        "auth/kubernetes/config",
        json={"kubernetes_host": HOST, "issuer": "someone-else", "disable_iss_validation": False},
    )
    assert r.status_code == 204
    r = await login(h, "app", make_jwt())
    assert r.status_code == 403 and "invalid issuer (iss) claim" in r.json()["errors"][0]
    await h.call("POST", "auth/kubernetes/config", json={"kubernetes_host": HOST, "issuer": "someone-else"})
    assert (await login(h, "app", make_jwt())).status_code == 200  # deprecated: off by default


async def test_login_namespace_selector(h: Harness, kube: MockKubeAPI) -> None:
    r = await h.call(
        "POST",
        "auth/kubernetes/role/sel",
        json={
            "bound_service_account_names": "*",
            "bound_service_account_namespace_selector": '{"matchLabels": {"vault": "yes"}}',
        },
    )
    assert r.status_code == 200, r.text
    assert (await login(h, "sel", make_jwt(ns="labelled"))).status_code == 200
    r = await login(h, "sel", make_jwt(ns="plain"))
    assert r.status_code == 403 and r.json()["errors"][0].startswith("namespace not authorized")


async def test_login_annotations_as_alias_metadata(h: Harness, kube: MockKubeAPI) -> None:
    await h.call(
        "POST",
        "auth/kubernetes/config",
        json={"kubernetes_host": HOST, "use_annotations_as_alias_metadata": True},
    )
    kube.annotations = {"vault.hashicorp.com/alias-metadata-team": "blue", "other": "x"}
    assert (await login(h, "app", make_jwt())).status_code == 200
    assert kube.requests[-1].url.path == "/api/v1/namespaces/default/serviceaccounts/vault-auth"
    kube.annotations = {"vault.hashicorp.com/alias-metadata-service_account_uid": "spoof"}
    r = await login(h, "app", make_jwt())
    assert r.status_code == 400 and "reserved" in r.json()["errors"][0]


async def test_login_bound_cidrs(h: Harness) -> None:
    await h.call(
        "POST",
        "auth/kubernetes/role/cidr",
        json={
            "bound_service_account_names": "*",
            "bound_service_account_namespaces": "*",
            "token_bound_cidrs": "10.0.0.0/8",
        },
    )
    r = await login(h, "cidr", make_jwt())
    assert r.status_code == 403


# -- renewal ---------------------------------------------------------------------------------


async def renew_self(h: Harness, token: str) -> httpx.Response:
    return await h.call("POST", "auth/token/renew-self", json={}, token=token)


async def token_times(h: Harness, token: str) -> tuple[Any, Any]:
    """What a renewal changes: the expiry and the last renewal time (both to the microsecond)."""
    r = await h.call("POST", "auth/token/lookup", json={"token": token})
    assert r.status_code == 200, r.text
    return r.json()["data"]["expire_time"], r.json()["data"].get("last_renewal")


async def write_role(h: Harness, name: str, body: dict[str, Any]) -> None:
    r = await h.call("POST", f"auth/kubernetes/role/{name}", json=body)
    assert r.status_code in (200, 204), r.text


async def test_renewal_rechecks_the_role_and_its_bindings(h: Harness, kube: MockKubeAPI) -> None:
    auth = (await login(h, "app", make_jwt(ns="team-a", sa="web-frontend"))).json()["auth"]
    token = auth["client_token"]
    reviews = len(kube.requests)
    r = await renew_self(h, token)
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["lease_duration"] == 3600
    assert len(kube.requests) == reviews  # no TokenReview (nor any API call) on renewal, as in Vault
    before = await token_times(h, token)

    refusals: list[tuple[dict[str, Any], int, str]] = [
        # the namespace is no longer bound
        ({"bound_service_account_namespaces": "default"}, 403, "namespace not authorized"),
        # the service-account name is no longer bound
        ({"bound_service_account_names": "vault-auth"}, 403, "service account name not authorized"),
    ]
    for change, status, message in refusals:
        await write_role(h, "app", change)
        r = await renew_self(h, token)
        assert (r.status_code, r.json()) == (status, {"errors": [message]}), (change, r.text)
        r = await h.call("POST", "auth/token/renew", json={"token": token})
        assert r.status_code == status, r.text
        assert await token_times(h, token) == before  # refused: the token is as it was
        # bound again: renews again
        await write_role(
            h,
            "app",
            {"bound_service_account_names": ["*"], "bound_service_account_namespaces": ["team-*"]},
        )
        assert (await renew_self(h, token)).status_code == 200
        before = await token_times(h, token)

    assert (await h.call("DELETE", "auth/kubernetes/role/app")).status_code == 204
    r = await renew_self(h, token)
    assert r.status_code == 400, r.text
    assert r.json() == {"errors": ["role app does not exist during renewal"]}
    assert await token_times(h, token) == before
    assert (await h.call("GET", "auth/kubernetes/role/app")).status_code == 404


async def test_renewal_of_a_namespace_admitted_by_selector(h: Harness, kube: MockKubeAPI) -> None:
    selector = '{"matchLabels": {"vault": "yes"}}'
    await write_role(
        h, "sel", {"bound_service_account_names": "*", "bound_service_account_namespace_selector": selector}
    )
    token = (await login(h, "sel", make_jwt(ns="labelled"))).json()["auth"]["client_token"]
    calls = len(kube.requests)
    assert (await renew_self(h, token)).status_code == 200
    assert len(kube.requests) == calls  # the labels are not re-read
    # another selector: the login's reason no longer holds
    await write_role(
        h,
        "sel",
        {
            "bound_service_account_names": "*",
            "bound_service_account_namespace_selector": '{"matchLabels": {}}',
        },
    )
    r = await renew_self(h, token)
    assert (r.status_code, r.json()) == (403, {"errors": ["namespace not authorized"]})
    # the namespace listed by name instead (the selector cleared): renews
    await write_role(
        h, "sel", {"bound_service_account_names": "*", "bound_service_account_namespaces": "labelled"}
    )
    assert (await renew_self(h, token)).status_code == 200


# -- helpers ---------------------------------------------------------------------------------


def test_glob_and_selector_helpers() -> None:
    assert glob_match(["web-*"], "web-frontend") and not glob_match(["web-*"], "api")
    assert glob_match(["a?b"], "a?b") and not glob_match(["a?b"], "axb")
    sel = parse_namespace_selector(
        "matchLabels:\n  env: prod\nmatchExpressions:\n- {key: tier, operator: In, values: [a, b]}\n"
    )
    assert selector_matches(sel, {"env": "prod", "tier": "a"})
    assert not selector_matches(sel, {"env": "prod", "tier": "c"})
    assert not selector_matches(sel, {"env": "dev", "tier": "a"})
    with pytest.raises(ValueError):
        parse_namespace_selector('{"matchLabels": {"a": 1}}')
    with pytest.raises(ValueError):
        parse_namespace_selector('{"unknown": {}}')
