"""ACME orders: newOrder, authorizations, challenges, finalize and certificate download.

Validation runs in a background task of the process that took the challenge POST;
its outcome is written to storage, where every worker reads it. A task lost with
its process shows as ``invalid`` once :data:`state.VALIDATION_DEADLINE` has passed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from strongroom.engines.pki import store
from strongroom.engines.pki.acme import jws, state, validation
from strongroom.engines.pki.acme.context import Directory, Reply, Signed, verify_post
from strongroom.engines.pki.acme.problems import AcmeProblem
from strongroom.engines.pki.issuing import IssueInput, sign_certificate_request
from strongroom.engines.pki.keys import public_key_der
from strongroom.engines.pki.names import NameRequest, resolve_names
from strongroom.engines.pki.paths_issue import load_issuer, verbatim_role
from strongroom.engines.pki.roles import DEFAULT_KEY_USAGE, RoleEntry
from strongroom.logical.errors import UserError
from strongroom.logical.request import Request

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend
    from strongroom.framework import FieldData

log = logging.getLogger("strongroom.engines.pki.acme")

MAX_IDENTIFIERS = 100
RETRY_KINDS = ("connection", "dns", "tls", "serverInternal")
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # after the first attempt: five attempts within about a minute
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


# -- identifiers ------------------------------------------------------------------------------


def normalise_identifier(raw: Any) -> dict[str, str]:
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("type"), str)
        or not isinstance(raw.get("value"), str)
    ):
        raise AcmeProblem("malformed", "an identifier must be an object with string type and value")
    kind, value = raw["type"], raw["value"].strip()
    if kind == "dns":
        name = value.lower().rstrip(".")
        labels = name.split(".")
        body = labels[1:] if labels[0] == "*" else labels
        if len(name) > 253 or len(body) < 1 or not all(_LABEL.match(label) for label in body):
            raise AcmeProblem("rejectedIdentifier", f"{value[:80]!r} is not a valid DNS name")
        if "*" in name[1:]:
            raise AcmeProblem("rejectedIdentifier", "a wildcard may only be the whole leftmost label")
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return {"type": "dns", "value": name}
        raise AcmeProblem("rejectedIdentifier", "an IP address must use the ip identifier type")
    if kind == "ip":
        try:
            return {"type": "ip", "value": str(ipaddress.ip_address(value))}
        except ValueError:
            raise AcmeProblem("malformed", f"{value[:80]!r} is not an IP address") from None
    raise AcmeProblem("unsupportedIdentifier", f"identifier type {kind[:20]!r} is not supported")


def check_identifier(directory: Directory, ident: dict[str, str]) -> None:
    """The address policy and the directory's role, before any authorization exists."""
    settings = directory.validation_settings
    value = ident["value"]
    if ident["type"] == "ip":
        if not validation.address_allowed(ipaddress.ip_address(value), settings):
            raise AcmeProblem(
                "rejectedIdentifier",
                f"{value} is a loopback, private or otherwise non-public address "
                "(see challenge_permitted_ip_ranges)",
                identifier=ident,
            )
    elif value == "localhost" or value.endswith(".localhost"):
        if not validation.address_allowed(ipaddress.ip_address("127.0.0.1"), settings):
            raise AcmeProblem("rejectedIdentifier", f"{value} names the loopback interface", identifier=ident)
    role = directory.role
    if role is None:
        return
    probe = role.copy()
    probe.require_cn = False
    names = NameRequest(common_name=value) if ident["type"] == "dns" else NameRequest(ip_sans=[value])
    try:
        resolve_names(probe, names, None)
    except UserError as err:
        raise AcmeProblem("rejectedIdentifier", "; ".join(err.errors), identifier=ident) from None


# -- views ------------------------------------------------------------------------------------


def order_view(directory: Directory, order: state.Order) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": order.status,
        "expires": state.rfc3339(order.expires),
        "identifiers": order.identifiers,
        "authorizations": [directory.url(f"authorization/{a}") for a in order.authorization_ids],
        "finalize": directory.url(f"order/{order.id}/finalize"),
    }
    if order.status == "valid":
        out["certificate"] = directory.url(f"order/{order.id}/cert")
    if order.error:
        out["error"] = order.error
    return out


def challenge_view(directory: Directory, authz: state.Authorization, ch: state.Challenge) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": ch.type,
        "url": directory.url(f"challenge/{authz.id}/{ch.type}"),
        "status": ch.status,
        "token": ch.token,
    }
    if ch.validated:
        out["validated"] = state.rfc3339(ch.validated)
    if ch.error:
        out["error"] = ch.error
    return out


def authz_view(directory: Directory, authz: state.Authorization) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": authz.status,
        "expires": state.rfc3339(authz.expires),
        "identifier": authz.identifier,
        "challenges": [challenge_view(directory, authz, ch) for ch in authz.challenges],
    }
    if authz.wildcard:
        out["wildcard"] = True
    return out


# -- newOrder and reads -----------------------------------------------------------------------


def _challenge_types(ident: dict[str, str], wildcard: bool) -> list[str]:
    if ident["type"] == "ip":
        return ["http-01"]
    if wildcard:
        return ["dns-01"]
    return ["http-01", "dns-01", "tls-alpn-01"]


async def new_order(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    signed = await verify_post(backend, req, directory, "new-order", jwk_allowed=False, kid_allowed=True)
    account = signed.account
    assert account is not None
    payload = signed.payload()
    for unsupported in ("notBefore", "notAfter"):
        if payload.get(unsupported) is not None:
            raise AcmeProblem("malformed", f"{unsupported} is not supported")
    if payload.get("profile") is not None:
        raise AcmeProblem("malformed", "certificate profiles are not supported")
    raw_ids = payload.get("identifiers")
    if not isinstance(raw_ids, list) or not raw_ids:
        raise AcmeProblem("malformed", "identifiers must be a non-empty list")
    if len(raw_ids) > MAX_IDENTIFIERS:
        raise AcmeProblem("rejectedIdentifier", f"at most {MAX_IDENTIFIERS} identifiers per order")
    identifiers: list[dict[str, str]] = []
    for raw in raw_ids:
        ident = normalise_identifier(raw)
        if ident not in identifiers:
            identifiers.append(ident)
    problems: list[AcmeProblem] = []
    for ident in identifiers:
        try:
            check_identifier(directory, ident)
        except AcmeProblem as problem:
            problem.identifier = ident
            problems.append(problem)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise AcmeProblem(
            "rejectedIdentifier", "some identifiers were rejected; see subproblems", subproblems=problems
        )
    replaces = payload.get("replaces")
    if replaces is not None and not isinstance(replaces, str):
        raise AcmeProblem("malformed", "replaces must be a string")
    now = time.time()
    order = state.Order(
        id=state.new_id(),
        account_id=account.id,
        directory=directory.prefix,
        identifiers=identifiers,
        authorization_ids=[],
        expires=now + state.ORDER_LIFETIME,
    )
    authorizations: list[state.Authorization] = []
    for ident in identifiers:
        wildcard = ident["type"] == "dns" and ident["value"].startswith("*.")
        base = {"type": ident["type"], "value": ident["value"][2:] if wildcard else ident["value"]}
        authz = state.Authorization(
            id=state.new_id(),
            account_id=account.id,
            identifier=base,
            wildcard=wildcard,
            expires=now + state.AUTHZ_LIFETIME,
            challenges=[
                state.Challenge(t, state.new_id() + state.new_id()) for t in _challenge_types(base, wildcard)
            ],
        )
        authorizations.append(authz)
        order.authorization_ids.append(authz.id)
    async with backend.storage.transaction() as txn:
        for authz in authorizations:
            await state.save_authz(txn, authz)
        await state.save_order(txn, order)
    return Reply(order_view(directory, order), 201, directory.url(f"order/{order.id}"))


async def _load_own_order(backend: PkiBackend, signed: Signed, order_id: str) -> state.Order:
    account = signed.account
    assert account is not None
    order = await state.load_order(backend.storage, account.id, order_id)
    if order is None:
        raise AcmeProblem("malformed", "no such order for this account", status=404)
    return order


async def refresh_order(backend: PkiBackend, order: state.Order) -> state.Order:
    """Move a pending order on from its authorizations (ready or invalid), and expire it."""
    now = time.time()
    if order.status in ("pending", "ready") and now > order.expires:
        order.status = "invalid"
        order.error = AcmeProblem("malformed", "the order expired").document()
        await state.save_order(backend.storage, order)
        return order
    if order.status != "pending":
        return order
    statuses = []
    for authz_id in order.authorization_ids:
        authz = await state.load_authz(backend.storage, order.account_id, authz_id)
        statuses.append("invalid" if authz is None else authz.effective_status(now))
    if any(s in ("invalid", "deactivated", "expired", "revoked") for s in statuses):
        order.status = "invalid"
        order.error = AcmeProblem("unauthorized", "an authorization of this order failed").document()
    elif all(s == "valid" for s in statuses):
        order.status = "ready"
    else:
        return order
    await state.save_order(backend.storage, order)
    return order


async def order_read(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    order_id = str(d["order_id"])
    signed = await verify_post(
        backend, req, directory, f"order/{order_id}", jwk_allowed=False, kid_allowed=True
    )
    order = await refresh_order(backend, await _load_own_order(backend, signed, order_id))
    reply = Reply(order_view(directory, order), 200, directory.url(f"order/{order.id}"))
    if order.status in ("pending", "processing"):
        reply.retry_after = 1
    return reply


async def _load_own_authz(backend: PkiBackend, signed: Signed, authz_id: str) -> state.Authorization:
    account = signed.account
    assert account is not None
    authz = await state.load_authz(backend.storage, account.id, authz_id)
    if authz is None:
        raise AcmeProblem("malformed", "no such authorization for this account", status=404)
    effective = authz.effective_status(time.time())
    if effective != authz.status:
        authz.status = effective
        for ch in authz.challenges:
            if ch.status == "processing":
                ch.status = "invalid"
                ch.error = AcmeProblem("serverInternal", "validation did not finish in time").document()
        await state.save_authz(backend.storage, authz)
    return authz


async def authz_read(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    authz_id = str(d["authz_id"])
    rel = f"authorization/{authz_id}"
    signed = await verify_post(backend, req, directory, rel, jwk_allowed=False, kid_allowed=True)
    authz = await _load_own_authz(backend, signed, authz_id)
    if not signed.request.is_post_as_get():
        status = signed.payload().get("status")
        if status != "deactivated":
            raise AcmeProblem("malformed", "an authorization may only be updated to deactivated")
        if authz.status in ("pending", "valid"):
            authz.status = "deactivated"
            await state.save_authz(backend.storage, authz)
    reply = Reply(authz_view(directory, authz))
    if authz.status == "pending":
        reply.retry_after = 1
    return reply


# -- challenges -------------------------------------------------------------------------------


async def challenge_post(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    authz_id, kind = str(d["authz_id"]), str(d["challenge_type"])
    rel = f"challenge/{authz_id}/{kind}"
    signed = await verify_post(backend, req, directory, rel, jwk_allowed=False, kid_allowed=True)
    account = signed.account
    assert account is not None
    authz = await _load_own_authz(backend, signed, authz_id)
    challenge = next((c for c in authz.challenges if c.type == kind), None)
    if challenge is None:
        raise AcmeProblem("malformed", f"no {kind[:20]} challenge in this authorization", status=404)
    if not signed.request.is_post_as_get():
        signed.payload()  # must be a JSON object ({} by RFC 8555 §7.5.1)
        if authz.status == "pending" and challenge.status == "pending":
            settings = directory.validation_settings
            challenge.status, challenge.started = "processing", time.time()
            await state.save_authz(backend.storage, authz)
            key_auth = jws.key_authorization(challenge.token, account.jwk)
            start_validation(backend, account.id, authz, challenge, key_auth, settings)
    reply = Reply(challenge_view(directory, authz, challenge))
    reply.links.append((directory.url(f"authorization/{authz.id}"), "up"))
    if challenge.status == "processing":
        reply.retry_after = 1  # lego waits 5 s between polls without it
    return reply


def start_validation(
    backend: PkiBackend,
    account_id: str,
    authz: state.Authorization,
    challenge: state.Challenge,
    key_authorization: str,
    settings: validation.ValidationSettings,
) -> None:
    tasks: set[asyncio.Task[None]] = backend.__dict__.setdefault("_acme_tasks", set())
    task = asyncio.get_running_loop().create_task(
        _run_validation(
            backend, account_id, authz.id, authz.identifier, challenge, key_authorization, settings
        )
    )
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _run_validation(
    backend: PkiBackend,
    account_id: str,
    authz_id: str,
    identifier: dict[str, str],
    challenge: state.Challenge,
    key_authorization: str,
    settings: validation.ValidationSettings,
) -> None:
    """Attempt the challenge, retrying transient failures, then record the outcome."""
    problem: AcmeProblem | None = None
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            await validation.validate(
                challenge.type, identifier, challenge.token, key_authorization, settings
            )
            problem = None
            break
        except AcmeProblem as err:
            problem = err
        except Exception:  # a validator bug must not leave the challenge processing forever
            log.exception("ACME %s validation failed unexpectedly", challenge.type)
            problem = AcmeProblem("serverInternal", "validation failed unexpectedly")
        if problem.kind not in RETRY_KINDS or attempt == len(RETRY_DELAYS):
            break
        await asyncio.sleep(RETRY_DELAYS[attempt])
    try:
        await _record_outcome(backend, account_id, authz_id, challenge.type, problem)
    except Exception:
        log.exception("could not record the outcome of an ACME validation")


async def _record_outcome(
    backend: PkiBackend, account_id: str, authz_id: str, kind: str, problem: AcmeProblem | None
) -> None:
    async with backend.storage.transaction() as txn:
        authz = await state.load_authz(txn, account_id, authz_id)
        if authz is None or authz.status != "pending":
            return
        for ch in authz.challenges:
            if ch.type != kind:
                continue
            if problem is None:
                ch.status, ch.validated, ch.error = "valid", time.time(), None
                authz.status = "valid"
            else:
                if problem.identifier is None:
                    problem.identifier = authz.identifier
                ch.status, ch.error = "invalid", problem.document()
                authz.status = "invalid"
        await state.save_authz(txn, authz)


# -- finalize and download --------------------------------------------------------------------


def _csr_names(csr: x509.CertificateSigningRequest) -> tuple[str, list[str], list[str]]:
    try:
        cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    except Exception:
        raise AcmeProblem("badCSR", "the CSR's subject cannot be parsed") from None
    cn = str(cns[0].value).lower() if cns else ""
    dns: list[str] = []
    ips: list[str] = []
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    except Exception:  # malformed or duplicate extensions, unknown encodings
        raise AcmeProblem("badCSR", "the CSR's extensions cannot be parsed") from None
    if san is not None:
        for name in san:
            if isinstance(name, x509.DNSName):
                dns.append(name.value.lower())
            elif isinstance(name, x509.IPAddress):
                ips.append(str(name.value))
            else:
                raise AcmeProblem("badCSR", "the CSR may only request DNS and IP subject alternative names")
    return cn, dns, ips


def _acme_role(directory: Directory) -> RoleEntry:
    """The role orders are signed with: the directory's, or Vault's sign-verbatim defaults."""
    if directory.role is None:
        shim = {
            "key_usage": list(DEFAULT_KEY_USAGE),
            "ext_key_usage": ["ServerAuth"],
            "ext_key_usage_oids": [],
            "signature_bits": 0,
            "use_pss": False,
        }
        role = verbatim_role(shim, None)  # type: ignore[arg-type]
    else:
        role = directory.role.copy()
    if not directory.config.allow_role_ext_key_usage:
        role.ext_key_usage, role.ext_key_usage_oids = ["ServerAuth"], []
        role.server_flag, role.client_flag = True, False
        role.code_signing_flag, role.email_protection_flag = False, False
    role.no_store = False
    role.generate_lease = False
    return role


async def finalize(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    order_id = str(d["order_id"])
    rel = f"order/{order_id}/finalize"
    signed = await verify_post(backend, req, directory, rel, jwk_allowed=False, kid_allowed=True)
    account = signed.account
    assert account is not None
    order = await refresh_order(backend, await _load_own_order(backend, signed, order_id))
    if order.status != "ready":
        raise AcmeProblem("orderNotReady", f"the order is {order.status}, not ready")
    csr_b64 = signed.payload().get("csr")
    if not isinstance(csr_b64, str):
        raise AcmeProblem("malformed", "csr must be a base64url string")
    try:
        csr = x509.load_der_x509_csr(jws.b64url_decode(csr_b64))
        signature_ok = csr.is_signature_valid
    except AcmeProblem:
        raise AcmeProblem("badCSR", "the CSR is not valid base64url") from None
    except Exception:  # not DER, not a CSR, or a signature algorithm cryptography lacks
        raise AcmeProblem("badCSR", "the CSR cannot be parsed") from None
    if not signature_ok:
        raise AcmeProblem("badCSR", "the CSR's signature does not verify")
    cn, dns, ips = _csr_names(csr)
    requested = {i["value"] for i in order.identifiers if i["type"] == "dns"}
    requested_ips = {i["value"] for i in order.identifiers if i["type"] == "ip"}
    csr_dns, csr_ips = set(dns), {str(ipaddress.ip_address(i)) for i in ips}
    if cn:
        try:
            csr_ips.add(str(ipaddress.ip_address(cn)))
        except ValueError:
            csr_dns.add(cn)
    if csr_dns != requested or csr_ips != requested_ips:
        raise AcmeProblem("badCSR", "the CSR's names differ from the order's identifiers")
    try:
        csr_key = csr.public_key()
    except Exception:  # an algorithm cryptography does not support
        raise AcmeProblem("badCSR", "the CSR's public key type is not supported") from None
    if public_key_der(csr_key) == public_key_der(jws.public_key(account.jwk)):
        raise AcmeProblem("badCSR", "the certificate key must differ from the account key")
    async with backend.storage.transaction() as txn:  # one finalize wins, whichever worker
        current = await state.load_order(txn, account.id, order.id)
        if current is None or current.status != "ready":
            raise AcmeProblem("orderNotReady", "the order is already being finalized")
        order.status = "processing"
        await state.save_order(txn, order)
    try:
        await _issue(backend, directory, order, csr, cn, sorted(requested), sorted(requested_ips))
    except AcmeProblem as problem:
        order.status, order.error = "invalid", problem.document()
        await state.save_order(backend.storage, order)
        raise
    except UserError as err:
        refused = AcmeProblem("badCSR", "; ".join(err.errors))
        order.status, order.error = "invalid", refused.document()
        await state.save_order(backend.storage, order)
        raise refused from None
    return Reply(order_view(directory, order), 200, directory.url(f"order/{order.id}"))


async def _issue(
    backend: PkiBackend,
    directory: Directory,
    order: state.Order,
    csr: x509.CertificateSigningRequest,
    cn: str,
    dns: list[str],
    ips: list[str],
) -> None:
    role = _acme_role(directory)
    ref = directory.issuer_ref or role.issuer_ref or store.DEFAULT_REF
    issuer = await load_issuer(backend, ref)
    if issuer.leaf_not_after_behavior == "err":
        issuer = replace(issuer, leaf_not_after_behavior="truncate")
    if not cn:  # Vault: a wildcard name first, then a DNS name, then an IP
        cn = next((n for n in dns if n.startswith("*.")), dns[0] if dns else (ips[0] if ips else ""))
    system = backend.config.system
    default_ttl, mount_max = system.default_lease_ttl(), system.max_lease_ttl()
    ttl = min(role.ttl or default_ttl, directory.config.max_ttl or state.DEFAULT_MAX_TTL)
    inp = IssueInput(
        names=NameRequest(common_name=cn, alt_names=dns, alt_names_sent=True, ip_sans=ips), ttl=ttl
    )
    role.use_csr_common_name, role.use_csr_sans = False, False
    csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    issued = await sign_certificate_request(
        role, inp, csr_pem, issuer, default_ttl, mount_max, display_name=f"acme-{order.account_id}"
    )
    cert = issued.certificate
    await store.store_certificate(backend.storage, cert, issuer.issuer_id)
    serial = store.serial_to_str(cert.serial_number)
    leaf = cert.public_bytes(serialization.Encoding.PEM).decode()
    chain = issuer.chain_pem or [issuer.certificate_pem]
    order.cert_serial = serial
    order.cert_expiry = cert.not_valid_after_utc.timestamp()
    order.certificate_chain = leaf + "".join(p if p.endswith("\n") else p + "\n" for p in chain)
    order.status, order.error = "valid", None
    async with backend.storage.transaction() as txn:
        await state.save_order(txn, order)
        await txn.put(state.CERT_OWNER + serial, order.account_id.encode())


async def alternate_chains(backend: PkiBackend, chain_pem: str) -> list[str]:
    """Other chains for the same leaf: issuers with the signing CA's subject and key (cross-signs).

    Each alternate is the leaf followed by that issuer's own chain; certbot's
    ``--preferred-chain``, uacme ``-l`` and cert-manager's ``preferredChain`` pick among them.
    """
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    if len(certs) < 2:
        return []
    leaf, signer = certs[0], certs[1]
    signer_spki = public_key_der(signer.public_key())
    out: list[str] = []
    for entry in await store.list_issuers(backend.storage):
        cert = entry.cert()
        if (
            cert == signer
            or cert.subject != signer.subject
            or public_key_der(cert.public_key()) != signer_spki
        ):
            continue
        chain = [p.strip() + "\n" for p in (entry.ca_chain or [entry.certificate])]
        out.append(leaf.public_bytes(serialization.Encoding.PEM).decode() + "".join(chain))
    return out


async def certificate(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    order_id = str(d["order_id"])
    index_text, alternate = d.get_ok("alternate") if "alternate" in d.fields else ("", False)
    rel = f"order/{order_id}/cert" + (f"/{index_text}" if alternate else "")
    signed = await verify_post(backend, req, directory, rel, jwk_allowed=False, kid_allowed=True)
    order = await _load_own_order(backend, signed, order_id)
    if order.status != "valid" or not order.certificate_chain:
        raise AcmeProblem("malformed", "the order has no certificate yet", status=404)
    alternates = await alternate_chains(backend, order.certificate_chain)
    body = order.certificate_chain
    if alternate:
        index = int(index_text) if str(index_text).isdigit() else 0
        if not 1 <= index <= len(alternates):
            raise AcmeProblem("malformed", "no such alternate chain", status=404)
        body = alternates[index - 1]
    base = directory.url(f"order/{order_id}/cert")
    links = [(f"{base}/{n}", "alternate") for n in range(1, len(alternates) + 1)]
    if alternate:
        links = [(base, "alternate")] + [link for link in links if link[0] != directory.url(rel)]
    return Reply(body.encode(), content_type="application/pem-certificate-chain", links=links)
