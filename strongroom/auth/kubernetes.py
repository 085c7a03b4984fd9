"""The Kubernetes auth method: a pod's service-account JWT in, a token for its role out.

Wire behaviour follows ``hashicorp/vault-plugin-auth-kubernetes`` as Vault 1.16 ships it:
``config``, ``role/<name>`` (LIST ``role``) and the unauthenticated ``login {role, jwt}``.

Why a login is trusted, step by step:

1. The JWT's claims are read first, so that a token for the wrong service account or
   namespace is refused *before* anything is sent to the cluster. With ``pem_keys``
   configured the signature is verified here (PyJWT, RSA/ECDSA/PSS); without them the
   claims are only hints and the cluster's TokenReview is the authority, as in Vault.
2. ``exp``/``nbf`` (when present), the deprecated ``issuer`` (only when configured and
   ``disable_iss_validation`` is false) and the role's ``audience`` are checked.
3. The service-account name and namespace must be bound by the role (``*`` and
   ``go-glob`` style ``*`` patterns allowed); a namespace may instead match the role's
   ``bound_service_account_namespace_selector``, which needs one ``GET
   /api/v1/namespaces/<ns>`` on the Kubernetes API.
4. A ``TokenReview`` is POSTed to ``{kubernetes_host}/apis/authentication.k8s.io/v1/tokenreviews``
   over TLS pinned to the configured CA, bearing ``token_reviewer_jwt`` (or the client's own
   JWT). The review must say ``authenticated``, carry no error, overlap the requested
   audiences, and name the same service account (username
   ``system:serviceaccount:<ns>:<sa>``, uid) as the JWT's claims.

Anything after the role lookup that says "no" answers 403; the reason of a failed
TokenReview (unreachable API, unauthenticated, mismatch) is logged, not returned, since
Vault answers those with a bare ``permission denied``. The JWT is never stored, logged
or echoed in a message; ``token_reviewer_jwt`` is stored but never read back (a read
shows ``token_reviewer_jwt_set``).

Renewal (``RENEW`` on ``login``, asked by the token store): refused (400) once the role is
deleted, and (403, the login's texts) once the role no longer binds the service-account
name or namespace recorded in the token's metadata at login. The cluster is not asked
again (Vault sends no TokenReview on renewal either): a namespace admitted at login through
``bound_service_account_namespace_selector`` keeps renewing while the role has that same
selector (its labels are not re-read); another selector, or none, refuses. Vault itself only
checks that the role still exists.

Deviations from Vault, on purpose: a login without a config answers 400 (Vault: 500), as
does a JWT without a service-account UID; the in-pod defaults
(``/var/run/secrets/kubernetes.io/serviceaccount/{ca.crt,token}``) are used only when
the files exist rather than failing the config write; user lockout does not apply (Vault
does not lock out Kubernetes logins either).
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import httpx
import jwt as pyjwt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.types import Options

from strongroom.auth.common import TokenParams, check_cidrs, token_fields
from strongroom.framework import Display, Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import CodedError, PermissionDenied, UserError
from strongroom.logical.request import Auth, Operation, Request, Response
from strongroom.logical.storage import get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.auth.kubernetes")

CONFIG_KEY = "config"
ROLE_PREFIX = "role/"
LOCAL_CA_CERT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
LOCAL_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 (a path)

ALIAS_SOURCE_UID = "serviceaccount_uid"
ALIAS_SOURCE_NAME = "serviceaccount_name"
ALIAS_SOURCES = (ALIAS_SOURCE_UID, ALIAS_SOURCE_NAME)
ALIAS_METADATA_ANNOTATION_PREFIX = "vault.hashicorp.com/alias-metadata-"

# the signing algorithms the Kubernetes API server's issuer may use (the plugin's list)
ALLOWED_ALGS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
# clock skew tolerated on exp/nbf, as cap/jwt's default leeway
LEEWAY_S = 150

META_UID = "service_account_uid"
META_NAME = "service_account_name"
META_NAMESPACE = "service_account_namespace"
META_SECRET = "service_account_secret_name"  # noqa: S105 (a metadata key)
RESERVED_ALIAS_KEYS = frozenset({META_UID, META_NAME, META_NAMESPACE, META_SECRET})

ROLE_NOT_AUDIENCE_WARNING = (
    "This role does not specify an audience. In a future version of Vault, specifying an "
    "audience will be required."
)

S = FieldType.STRING

_CONFIG_FIELDS: dict[str, Field] = {
    "kubernetes_host": Field(
        S,
        "Host must be a host string, a host:port pair, or a URL to the base of the Kubernetes API server.",
    ),
    "kubernetes_ca_cert": Field(
        S, "PEM encoded CA cert for use by the TLS client used to talk with the API."
    ),
    "token_reviewer_jwt": Field(
        S,
        "A service account JWT (or other token) used as a bearer token to access the TokenReview API "
        "to validate other JWTs during login. If not set the JWT used for login will be used to access "
        "the API.",
        sensitive=True,
    ),
    "pem_keys": Field(
        FieldType.COMMA_LIST,
        "Optional list of PEM-formated public keys or certificates used to verify the signatures of "
        "kubernetes service account JWTs. If a certificate is given, its public key will be extracted. "
        "Not every installation of Kubernetes exposes these keys.",
    ),
    "issuer": Field(
        S,
        "Optional JWT issuer. If no issuer is specified, then this plugin will use "
        "kubernetes.io/serviceaccount as the default issuer. (Deprecated, will be removed in a future "
        "release)",
        deprecated=True,
    ),
    "disable_iss_validation": Field(
        FieldType.BOOL,
        "Disable JWT issuer validation (Deprecated, will be removed in a future release)",
        default=True,
        deprecated=True,
    ),
    "disable_local_ca_jwt": Field(
        FieldType.BOOL,
        "Disable defaulting to the local CA cert and service account JWT when running in a Kubernetes pod",
        default=False,
    ),
    "use_annotations_as_alias_metadata": Field(
        FieldType.BOOL,
        "Use annotations from the client token's associated service account as alias metadata for the "
        "Vault entity. Only annotations with the prefix " + ALIAS_METADATA_ANNOTATION_PREFIX + " will be "
        "used. Requires the token reviewer to be allowed to read service accounts.",
        default=False,
    ),
}

_ROLE_FIELDS: dict[str, Field] = {
    "name": Field(FieldType.NAME, "Name of the role."),
    "bound_service_account_names": Field(
        FieldType.COMMA_LIST,
        'List of service account names able to access this role. If set to "*" all names are allowed.',
    ),
    "bound_service_account_namespaces": Field(
        FieldType.COMMA_LIST,
        'List of namespaces allowed to access this role. If set to "*" all namespaces are allowed.',
    ),
    "bound_service_account_namespace_selector": Field(
        S,
        "A label selector for Kubernetes namespaces which are allowed to access this role. Accepts "
        "either a JSON or YAML object. If set with bound_service_account_namespaces, the conditions "
        "are ORed.",
    ),
    "audience": Field(S, "Optional Audience claim to verify in the jwt."),
    "alias_name_source": Field(
        S,
        "Source to use when deriving the Alias name. valid choices: "
        f'"{ALIAS_SOURCE_UID}" : <token.uid> (most secure choice), '
        f'"{ALIAS_SOURCE_NAME}" : <namespace>/<serviceaccount>. default: "{ALIAS_SOURCE_UID}"',
        default=ALIAS_SOURCE_UID,
    ),
    "num_uses": Field(
        FieldType.INT,
        'Use "token_num_uses" instead. If this and "token_num_uses" are both specified, only '
        '"token_num_uses" will be used.',
        deprecated=True,
    ),
    **token_fields("policies", "ttl", "max_ttl", "period", "bound_cidrs"),
}


class ReviewError(Exception):
    """The Kubernetes API did not vouch for a JWT; the message is for the log (never has the JWT)."""


def _op(
    handler: Callable[[Request, FieldData], Awaitable[Response | None]], summary: str = ""
) -> PathOperation:
    return PathOperation(handler, summary=summary)


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the texts Vault puts role names in (close enough: JSON string escaping)."""
    return json.dumps(text)


def glob_match(patterns: list[str], value: str) -> bool:
    """``strutil.StrListContainsGlob``: ``*`` matches any run of characters, nothing else is special."""
    for pattern in patterns:
        if pattern == "*":
            return True
        regex = ".*".join(re.escape(part) for part in pattern.split("*"))
        if re.fullmatch(regex, value, flags=re.DOTALL):
            return True
    return False


def name_bound(role: dict[str, Any], name: str) -> bool:
    """The role binds this service-account name (``*``, or a glob of ``bound_service_account_names``)."""
    names = list(role.get("bound_service_account_names") or [])
    return names == ["*"] or glob_match(names, name)


def namespace_listed(role: dict[str, Any], namespace: str) -> bool:
    """The role's ``bound_service_account_namespaces`` (not its selector) admit this namespace."""
    namespaces = list(role.get("bound_service_account_namespaces") or [])
    return bool(namespaces) and (namespaces[0] == "*" or glob_match(namespaces, namespace))


def parse_public_key_pem(text: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """A PEM public key or certificate -> its RSA/ECDSA key (``certutil.ParsePublicKeyPEM``)."""
    data = text.encode()
    key: Any = None
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            key = None
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return key
    raise UserError("data does not contain any valid RSA or ECDSA public keys")


def parse_namespace_selector(text: str) -> dict[str, Any]:
    """A ``metav1.LabelSelector`` given as JSON or YAML; raises ValueError when it is not one."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError("not JSON or YAML") from None
    if not isinstance(doc, dict) or set(doc) - {"matchLabels", "matchExpressions"}:
        raise ValueError("not a label selector")
    labels = doc.get("matchLabels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("matchLabels must map strings to strings")
    exprs = doc.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise ValueError("matchExpressions must be a list")
    for expr in exprs:
        if not isinstance(expr, dict) or not isinstance(expr.get("key"), str):
            raise ValueError("a match expression needs a key")
        operator = expr.get("operator")
        values = expr.get("values") or []
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist") or not isinstance(values, list):
            raise ValueError("unsupported match expression")
        if operator in ("In", "NotIn") and not values:
            raise ValueError("In and NotIn need values")
        if operator in ("Exists", "DoesNotExist") and values:
            raise ValueError("Exists and DoesNotExist take no values")
    return {"matchLabels": {str(k): v for k, v in labels.items()}, "matchExpressions": exprs}


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a namespace's labels satisfy a parsed label selector (all terms ANDed)."""
    for key, value in selector["matchLabels"].items():
        if labels.get(key) != value:
            return False
    for expr in selector["matchExpressions"]:
        key, operator = expr["key"], expr["operator"]
        values = [str(v) for v in expr.get("values") or []]
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


@dataclass
class ServiceAccount:
    """What a JWT claims about its service account (legacy secret tokens or projected tokens)."""

    name: str
    namespace: str
    uid: str
    secret_name: str
    audiences: list[str]

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> ServiceAccount:
        def text(value: Any) -> str:
            return value if isinstance(value, str) else ""

        name = text(claims.get("kubernetes.io/serviceaccount/service-account.name"))
        uid = text(claims.get("kubernetes.io/serviceaccount/service-account.uid"))
        namespace = text(claims.get("kubernetes.io/serviceaccount/namespace"))
        projected = claims.get("kubernetes.io")
        if isinstance(projected, dict):
            namespace = text(projected.get("namespace"))
            sa = projected.get("serviceaccount")
            if isinstance(sa, dict):
                name, uid = text(sa.get("name")), text(sa.get("uid"))
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else [a for a in aud or [] if isinstance(a, str)]
        secret = text(claims.get("kubernetes.io/serviceaccount/secret.name"))
        return cls(name=name, namespace=namespace, uid=uid, secret_name=secret, audiences=audiences)


@dataclass
class Review:
    """What the TokenReview API said about a JWT."""

    name: str
    namespace: str
    uid: str


class KubernetesBackend(FrameworkBackend):
    """One ``kubernetes`` auth mount."""

    backend_type = "kubernetes"
    help_text = (
        "The Kubernetes Auth Backend allows authentication for Kubernetes service accounts. The JWT "
        "of a service account is validated with the Kubernetes TokenReview API."
    )
    # Tests inject an httpx.MockTransport here (None: real network with the configured CA).
    transport: ClassVar[httpx.AsyncBaseTransport | None] = None
    timeout: ClassVar[float] = 10.0
    # where a pod finds its own CA and token; tests point these elsewhere
    local_ca_cert_path: ClassVar[str] = LOCAL_CA_CERT_PATH
    local_jwt_path: ClassVar[str] = LOCAL_JWT_PATH

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        super().__init__(config)

    # -- paths -------------------------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        disp = Display(prefix="kubernetes")
        return [
            Path(
                "config",
                {
                    Operation.READ: _op(self._config_read, "Read the configuration"),
                    Operation.UPDATE: _op(self._config_write, "Configure the Kubernetes auth method"),
                },
                fields=_CONFIG_FIELDS,
                synopsis="Configures the JWT Public Key and Kubernetes API information.",
                description=(
                    "The Kubernetes Auth backend validates service account JWTs and verifies their "
                    "existence with the Kubernetes TokenReview API. This endpoint configures the public "
                    "key used to validate the JWT signature and the necessary information to access the "
                    "Kubernetes API."
                ),
                display=disp,
            ),
            Path(
                "role/",
                {Operation.LIST: _op(self._role_list, "List the roles")},
                synopsis="Lists all the roles registered with the backend.",
                display=disp,
            ),
            Path(
                "role/{name}",
                {
                    Operation.READ: _op(self._role_read, "Read a role"),
                    Operation.CREATE: _op(self._role_write, "Create a role"),
                    Operation.UPDATE: _op(self._role_write, "Update a role"),
                    Operation.DELETE: _op(self._role_delete, "Delete a role"),
                },
                fields=_ROLE_FIELDS,
                existence_check=self._role_exists,
                synopsis="Register an role with the backend.",
                description=(
                    "A role is required to authenticate with this backend. The role binds kubernetes "
                    "service account metadata with token policies and settings."
                ),
                display=disp,
            ),
            Path(
                "login",
                {
                    Operation.UPDATE: _op(self._login, "Log in with a service account JWT"),
                    Operation.RENEW: _op(self._renew, "Renew a token issued by this method."),
                },
                fields={
                    "role": Field(
                        S,
                        "Name of the role against which the login is being attempted. This field is required",
                    ),
                    "jwt": Field(
                        S,
                        "A signed JWT for authenticating a service account. This field is required.",
                        sensitive=True,
                    ),
                },
                unauthenticated=True,
                synopsis="Authenticates Kubernetes service accounts with Vault.",
                display=disp,
            ),
        ]

    # -- config ------------------------------------------------------------------------------

    async def _config(self) -> dict[str, Any] | None:
        raw = await get_json(self.storage, CONFIG_KEY)
        return raw if isinstance(raw, dict) else None

    async def _config_write(self, req: Request, d: FieldData) -> Response | None:
        """Replace the whole config, as the plugin does (unsent fields take their defaults)."""
        host = str(d.get("kubernetes_host") or "").strip()
        if not host:
            raise UserError("no host provided")
        ca_cert = str(d.get("kubernetes_ca_cert") or "")
        disable_local = bool(d.get("disable_local_ca_jwt"))
        if disable_local and not ca_cert:
            raise UserError("kubernetes_ca_cert must be given when disable_local_ca_jwt is true")
        pem_keys = [str(k) for k in d.get("pem_keys") or []]
        for pem in pem_keys:
            parse_public_key_pem(pem)
        config = {
            "host": host,
            "ca_cert": ca_cert,
            "token_reviewer_jwt": str(d.get("token_reviewer_jwt") or ""),
            "pem_keys": pem_keys,
            "issuer": str(d.get("issuer") or ""),
            "disable_iss_validation": bool(d.get("disable_iss_validation")),
            "disable_local_ca_jwt": disable_local,
            "use_annotations_as_alias_metadata": bool(d.get("use_annotations_as_alias_metadata")),
        }
        await put_json(self.storage, CONFIG_KEY, config)
        return None

    async def _config_read(self, req: Request, d: FieldData) -> Response | None:
        config = await self._config()
        if config is None:
            return None
        return Response(
            data={
                "kubernetes_host": config.get("host", ""),
                "kubernetes_ca_cert": config.get("ca_cert", ""),
                "pem_keys": list(config.get("pem_keys") or []),
                "issuer": config.get("issuer", ""),
                "disable_iss_validation": bool(config.get("disable_iss_validation")),
                "disable_local_ca_jwt": bool(config.get("disable_local_ca_jwt")),
                "token_reviewer_jwt_set": bool(config.get("token_reviewer_jwt")),
                "use_annotations_as_alias_metadata": bool(config.get("use_annotations_as_alias_metadata")),
            }
        )

    # -- roles -------------------------------------------------------------------------------

    async def _role(self, name: str) -> dict[str, Any] | None:
        raw = await get_json(self.storage, ROLE_PREFIX + name.lower())
        return raw if isinstance(raw, dict) else None

    async def _role_exists(self, req: Request, d: FieldData) -> bool:
        return await self._role(str(d.get("name"))) is not None

    async def _role_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list(ROLE_PREFIX)})

    async def _role_delete(self, req: Request, d: FieldData) -> Response | None:
        await self.storage.delete(ROLE_PREFIX + str(d.get("name")).lower())
        return None

    async def _role_write(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name") or "")
        if not name:
            raise UserError("missing role name")
        role = await self._role(name)
        if role is None:
            role = {}
        params = TokenParams.from_fields(d, TokenParams.from_json(role.get("token")))
        self._upgrade_num_uses(d, params)
        warnings: list[str] = []

        if d.sent("bound_service_account_names") or "bound_service_account_names" not in role:
            role["bound_service_account_names"] = [str(n) for n in d.get("bound_service_account_names") or []]
        names: list[str] = role["bound_service_account_names"]
        if not names:
            raise UserError('"bound_service_account_names" can not be empty')
        if len(names) > 1 and "*" in names:
            raise UserError('can not mix "*" with values')

        if d.sent("bound_service_account_namespaces"):
            role["bound_service_account_namespaces"] = [
                str(n) for n in d.get("bound_service_account_namespaces") or []
            ]
        namespaces: list[str] = role.setdefault("bound_service_account_namespaces", [])
        # the plugin reads the selector on every write: unsent means cleared
        selector = str(d.get("bound_service_account_namespace_selector") or "")
        role["bound_service_account_namespace_selector"] = selector
        if not namespaces and not selector:
            raise UserError(
                '"bound_service_account_namespaces" can not be empty if '
                '"bound_service_account_namespace_selector" is not set'
            )
        if selector:
            try:
                parse_namespace_selector(selector)
            except ValueError:
                raise UserError('invalid "bound_service_account_namespace_selector" configured') from None
        if len(namespaces) > 1 and "*" in namespaces:
            raise UserError('can not mix "*" with values')

        if d.sent("audience"):
            role["audience"] = str(d.get("audience"))
        if not str(role.get("audience") or "").strip():
            warnings.append(ROLE_NOT_AUDIENCE_WARNING)

        if d.sent("alias_name_source") or not role.get("alias_name_source"):
            role["alias_name_source"] = str(d.get("alias_name_source") or ALIAS_SOURCE_UID)
        if role["alias_name_source"] not in ALIAS_SOURCES:
            raise UserError(
                f"invalid alias_name_source {_go_quote(role['alias_name_source'])}, must be one of: "
                + ", ".join(ALIAS_SOURCES)
            )

        role["token"] = params.to_json()
        await put_json(self.storage, ROLE_PREFIX + name.lower(), role)
        return Response(warnings=warnings) if warnings else None

    @staticmethod
    def _upgrade_num_uses(d: FieldData, params: TokenParams) -> None:
        """``tokenutil.UpgradeValue`` for the plugin's extra legacy name ``num_uses``."""
        if not d.sent("token_num_uses"):
            if d.sent("num_uses"):
                value = int(d.get("num_uses"))
                if value < 0:
                    raise UserError("'token_num_uses' cannot be negative")
                params.num_uses = value
                params.legacy["num_uses"] = value
        elif d.sent("num_uses"):
            params.legacy["num_uses"] = params.num_uses
        else:
            params.legacy.pop("num_uses", None)

    async def _role_read(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(str(d.get("name")))
        if role is None:
            return None
        data: dict[str, Any] = {
            "bound_service_account_names": list(role.get("bound_service_account_names") or []),
            "bound_service_account_namespaces": list(role.get("bound_service_account_namespaces") or []),
            "bound_service_account_namespace_selector": role.get(
                "bound_service_account_namespace_selector", ""
            ),
        }
        if role.get("audience"):
            data["audience"] = role["audience"]
        data.update(TokenParams.from_json(role.get("token")).to_api())
        data["alias_name_source"] = role.get("alias_name_source") or ALIAS_SOURCE_UID
        return Response(data=data)

    # -- login -------------------------------------------------------------------------------

    async def _login(self, req: Request, d: FieldData) -> Response | None:
        role_name = str(d.get("role") or "")
        if not role_name:
            raise UserError("missing role")
        token = str(d.get("jwt") or "").strip()
        if not token:
            raise UserError("missing jwt")
        role = await self._role(role_name)
        if role is None:
            raise UserError(f"invalid role name {_go_quote(role_name)}")
        params = TokenParams.from_json(role.get("token"))
        if params.bound_cidrs and not check_cidrs(req.connection.remote_addr, params.bound_cidrs):
            raise PermissionDenied()
        config = await self._config()
        if config is None:
            raise UserError("could not load backend configuration")

        claims = self._claims(token, config, role)
        sa = ServiceAccount.from_claims(claims)
        async with self._client(config) as client:
            await self._check_bindings(client, config, role, sa, token)
            if not sa.uid:
                raise UserError("could not parse UID from claims")
            if role.get("alias_name_source") == ALIAS_SOURCE_NAME:
                if not sa.namespace or not sa.name:
                    raise UserError("service account namespace and name must be set")
                alias_name = f"{sa.namespace}/{sa.name}"
            else:
                alias_name = sa.uid
            wanted = [str(role["audience"])] if role.get("audience") else sa.audiences
            try:
                review = await self._review(client, config, token, wanted)
            except ReviewError as err:
                log.info("kubernetes login refused for role %r: %s", role_name, err)
                raise PermissionDenied() from None
            mismatch = self._compare(sa, review)
            if mismatch:
                log.info("kubernetes login refused for role %r: %s", role_name, mismatch)
                raise PermissionDenied()
            annotations: dict[str, str] = {}
            if config.get("use_annotations_as_alias_metadata"):
                annotations = await self._annotations(client, config, token, sa)

        metadata = {
            META_UID: sa.uid,
            META_NAME: sa.name,
            META_NAMESPACE: sa.namespace,
            META_SECRET: sa.secret_name,
        }
        internal: dict[str, Any] = {"role": role_name}
        if not namespace_listed(role, sa.namespace):
            # admitted by the namespace's labels: renewals hold while the role keeps this selector
            internal["namespace_selector"] = str(role.get("bound_service_account_namespace_selector") or "")
        auth = Auth(
            metadata={**metadata, "role": role_name},
            display_name=f"{sa.namespace}-{sa.name}",
            alias_name=alias_name,
            alias_metadata={**annotations, **metadata},
            internal_data=internal,
        )
        params.apply(auth)
        return Response(auth=auth)

    async def _renew(self, req: Request, d: FieldData) -> Response | None:
        """Renew while the role exists and still binds the login's service account; reads only."""
        if req.auth is None:
            raise UserError("request auth was nil")
        role_name = str(req.auth.internal_data.get("role") or req.auth.metadata.get("role") or "")
        if not role_name:
            raise UserError("failed to fetch role_name during renewal")
        role = await self._role(role_name)
        if role is None:
            raise UserError(f"role {role_name} does not exist during renewal")
        if not name_bound(role, str(req.auth.metadata.get(META_NAME, ""))):
            raise CodedError(403, "service account name not authorized")
        if not namespace_listed(role, str(req.auth.metadata.get(META_NAMESPACE, ""))):
            selector = str(role.get("bound_service_account_namespace_selector") or "")
            admitted_by = req.auth.internal_data.get("namespace_selector")
            if not selector or selector != admitted_by:
                raise CodedError(403, "namespace not authorized")
        params = TokenParams.from_json(role.get("token"))
        auth = req.auth
        params.apply_renewal(auth)
        return Response(auth=auth)

    def _claims(self, token: str, config: dict[str, Any], role: dict[str, Any]) -> dict[str, Any]:
        """Parse (and, with pem_keys, verify) the JWT, then check exp/nbf, issuer and audience.

        A token that does not parse or whose signature fails answers a bare 403, as the
        plugin does; a claim that fails answers 403 with the claim's reason.
        """
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError:
            raise PermissionDenied() from None
        if header.get("alg") not in ALLOWED_ALGS:
            raise PermissionDenied()
        no_checks: Options = {
            "verify_aud": False,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_iss": False,
        }
        claims: Any = None
        pem_keys = list(config.get("pem_keys") or [])
        if pem_keys:
            for pem in pem_keys:
                try:
                    key = parse_public_key_pem(pem)
                    claims = pyjwt.decode(token, key=key, algorithms=list(ALLOWED_ALGS), options=no_checks)
                    break
                except (pyjwt.PyJWTError, UserError, ValueError, TypeError):
                    continue
            if claims is None:
                raise PermissionDenied()
        else:
            try:
                claims = pyjwt.decode(token, options={**no_checks, "verify_signature": False})
            except pyjwt.PyJWTError:
                raise PermissionDenied() from None
        if not isinstance(claims, dict):
            raise PermissionDenied()
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if exp is not None:
            if not isinstance(exp, int | float) or isinstance(exp, bool) or now > exp + LEEWAY_S:
                raise CodedError(403, "invalid expiration time (exp) claim: token is expired")
        if nbf is not None:
            if not isinstance(nbf, int | float) or isinstance(nbf, bool) or now + LEEWAY_S < nbf:
                raise CodedError(403, "invalid not before (nbf) claim: token not yet valid")
        issuer = str(config.get("issuer") or "")
        if not config.get("disable_iss_validation") and issuer and claims.get("iss") != issuer:
            raise CodedError(403, "invalid issuer (iss) claim")
        audience = str(role.get("audience") or "").strip()
        if audience:
            if audience not in ServiceAccount.from_claims(claims).audiences:
                raise CodedError(
                    403, "invalid audience (aud) claim: audience claim does not match any expected audience"
                )
        else:
            log.warning(
                "This role does not currently specify an audience. In a future version of Vault, "
                "specifying an audience will be required to authenticate successfully."
            )
        return claims

    async def _check_bindings(
        self,
        client: httpx.AsyncClient,
        config: dict[str, Any],
        role: dict[str, Any],
        sa: ServiceAccount,
        token: str,
    ) -> None:
        """The role must bind the claimed service account name and namespace (403 otherwise)."""
        if not name_bound(role, sa.name):
            raise CodedError(403, "service account name not authorized")
        allowed = namespace_listed(role, sa.namespace)
        problem = ""
        selector = str(role.get("bound_service_account_namespace_selector") or "")
        if not allowed and selector:
            try:
                labels = await self._namespace_labels(client, config, token, sa.namespace)
                allowed = selector_matches(parse_namespace_selector(selector), labels)
            except (ReviewError, ValueError) as err:
                problem = str(err)
        if not allowed:
            raise CodedError(403, "namespace not authorized" + (f" err={problem}" if problem else ""))

    @staticmethod
    def _compare(sa: ServiceAccount, review: Review) -> str:
        if sa.name != review.name:
            return "JWT names did not match"
        if sa.uid != review.uid:
            return "JWT UIDs did not match"
        if sa.namespace != review.namespace:
            return "JWT namepaces did not match"
        return ""

    # -- Kubernetes API ----------------------------------------------------------------------

    def _local_file(self, config: dict[str, Any], path: str) -> str:
        """An in-pod default, read only when the file exists and defaults are not disabled."""
        if config.get("disable_local_ca_jwt"):
            return ""
        try:
            return FsPath(path).read_text().strip()
        except OSError:
            return ""

    def _ssl_context(self, config: dict[str, Any]) -> ssl.SSLContext:
        """TLS pinned to the configured (or in-pod) CA; an unusable CA fails every handshake."""
        ca_cert = str(config.get("ca_cert") or "") or self._local_file(config, self.local_ca_cert_path)
        if not ca_cert:
            context = ssl.create_default_context()
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                context.load_verify_locations(cadata=ca_cert)
            except (ssl.SSLError, ValueError):
                log.warning(
                    "Configured CA PEM data contains no valid certificates, TLS verification will fail"
                )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _client(self, config: dict[str, Any]) -> httpx.AsyncClient:
        if self.transport is not None:
            return httpx.AsyncClient(transport=self.transport, timeout=self.timeout, follow_redirects=False)
        return httpx.AsyncClient(
            verify=self._ssl_context(config), timeout=self.timeout, follow_redirects=False
        )

    def _base_url(self, config: dict[str, Any]) -> str:
        host = str(config.get("host") or "").strip().rstrip("/")
        return host if "://" in host else "https://" + host

    def _bearer(self, config: dict[str, Any], token: str) -> str:
        reviewer = str(config.get("token_reviewer_jwt") or "") or self._local_file(
            config, self.local_jwt_path
        )
        return "Bearer " + (reviewer or token)

    async def _api(
        self, client: httpx.AsyncClient, method: str, url: str, bearer: str, body: Any = None
    ) -> dict[str, Any]:
        """One Kubernetes API call -> its JSON object; failures as :class:`ReviewError` (no secrets)."""
        headers = {"Authorization": bearer, "Accept": "application/json"}
        try:
            resp = await client.request(method, url, headers=headers, json=body)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as err:
            # an unusable kubernetes_host is accepted at config time (as in Vault) and fails here
            raise ReviewError(f"the Kubernetes API is unreachable ({type(err).__name__})") from None
        if resp.status_code == 401:
            raise ReviewError(
                "lookup failed: service account unauthorized; this could mean it has been deleted or "
                "recreated with a new token"
            )
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if not 200 <= resp.status_code <= 206:
            detail = doc.get("message") if isinstance(doc, dict) else ""
            raise ReviewError(
                f"the Kubernetes API answered HTTP {resp.status_code}: {str(detail or '')[:200]}"
            )
        if not isinstance(doc, dict):
            raise ReviewError("the Kubernetes API returned a body that is not a JSON object")
        if doc.get("kind") == "Status" and doc.get("status") != "Success":
            raise ReviewError(f"the Kubernetes API refused: {str(doc.get('message') or '')[:200]}")
        return doc

    async def _review(
        self, client: httpx.AsyncClient, config: dict[str, Any], token: str, audiences: list[str]
    ) -> Review:
        """POST a TokenReview and read who the API server says the JWT belongs to."""
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        doc = await self._api(
            client, "POST", self._base_url(config) + TOKEN_REVIEW_PATH, self._bearer(config, token), body
        )
        status = doc.get("status")
        if not isinstance(status, dict):
            status = {}
        error = status.get("error")
        if error:
            raise ReviewError(f"lookup failed: {str(error)[:200]}")
        if status.get("authenticated") is not True:
            raise ReviewError("lookup failed: service account jwt not valid")
        if audiences:
            granted = status.get("audiences")
            granted_list = [a for a in granted if isinstance(a, str)] if isinstance(granted, list) else []
            if not set(audiences) & set(granted_list):
                raise ReviewError(
                    f"lookup failed: service account jwt valid for audience(s) {granted_list}, "
                    f"but wanted {audiences}"
                )
        user = status.get("user")
        user = user if isinstance(user, dict) else {}
        parts = str(user.get("username") or "").split(":")
        if len(parts) != 4:
            raise ReviewError("lookup failed: unexpected username format")
        if parts[0] != "system" or parts[1] != "serviceaccount":
            raise ReviewError("lookup failed: username returned is not a service account")
        return Review(name=parts[3], namespace=parts[2], uid=str(user.get("uid") or ""))

    async def _namespace_labels(
        self, client: httpx.AsyncClient, config: dict[str, Any], token: str, namespace: str
    ) -> dict[str, str]:
        """The labels of a namespace (for ``bound_service_account_namespace_selector``)."""
        url = self._base_url(config) + "/api/v1/namespaces/" + quote(namespace, safe="")
        doc = await self._api(client, "GET", url, self._bearer(config, token))
        labels = (doc.get("metadata") or {}).get("labels") if isinstance(doc.get("metadata"), dict) else None
        if not isinstance(labels, dict):
            return {}
        return {str(k): str(v) for k, v in labels.items()}

    async def _annotations(
        self, client: httpx.AsyncClient, config: dict[str, Any], token: str, sa: ServiceAccount
    ) -> dict[str, str]:
        """Alias metadata from the service account's ``vault.hashicorp.com/alias-metadata-*`` annotations."""
        url = (
            self._base_url(config)
            + "/api/v1/namespaces/"
            + quote(sa.namespace, safe="")
            + "/serviceaccounts/"
            + quote(sa.name, safe="")
        )
        try:
            doc = await self._api(client, "GET", url, self._bearer(config, token))
        except ReviewError as err:
            raise UserError(f"failed to read the service account's annotations: {err}") from None
        meta = doc.get("metadata")
        raw = meta.get("annotations") if isinstance(meta, dict) else None
        out: dict[str, str] = {}
        for key, value in (raw if isinstance(raw, dict) else {}).items():
            if isinstance(key, str) and key.startswith(ALIAS_METADATA_ANNOTATION_PREFIX):
                out[key.removeprefix(ALIAS_METADATA_ANNOTATION_PREFIX)] = str(value)
        reserved = sorted(RESERVED_ALIAS_KEYS & set(out))
        if reserved:
            raise UserError(
                "service account annotations contain reserved alias metadata keys: " + ", ".join(reserved)
            )
        return out


async def factory(config: BackendConfig, core: Core) -> KubernetesBackend:
    """Build one kubernetes mount."""
    return KubernetesBackend(config, core)
