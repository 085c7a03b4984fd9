"""The ACME paths of a PKI mount: four directory bases, config/acme, EAB and account admin.

The protocol paths are unauthenticated in Vault's sense (the JWS authenticates
them); ``new-eab``, ``eab/`` and ``acme/mgmt/`` need a Vault token like any
other path.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from strongroom.engines.pki.acme import accounts, orders, revoke, state, validation
from strongroom.engines.pki.acme.context import (
    Directory,
    Reply,
    acme_handler,
    directory_prefix,
    resolve_directory,
    settings_changed,
)
from strongroom.engines.pki.acme.problems import AcmeProblem
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

BASES: tuple[tuple[str, dict[str, Field]], ...] = (
    ("acme/", {}),
    ("roles/{role}/acme/", {"role": Field(FieldType.NAME, "The role orders are signed with.")}),
    ("issuer/{issuer_ref}/acme/", {"issuer_ref": Field(FieldType.NAME, "The issuer that signs.")}),
    (
        "issuer/{issuer_ref}/roles/{role}/acme/",
        {
            "issuer_ref": Field(FieldType.NAME, "The issuer that signs."),
            "role": Field(FieldType.NAME, "The role orders are signed with."),
        },
    ),
)
_SEG = FieldType.STRING
POLICIES_HELP = "sign-verbatim, forbid or role:<name>"


async def directory_doc(req: Request, d: FieldData, directory: Directory) -> Reply:
    meta: dict[str, Any] = {"externalAccountRequired": directory.eab_policy != "not-required"}
    return Reply(
        {
            "newNonce": directory.url("new-nonce"),
            "newAccount": directory.url("new-account"),
            "newOrder": directory.url("new-order"),
            "revokeCert": directory.url("revoke-cert"),
            "keyChange": directory.url("key-change"),
            "renewalInfo": directory.url("renewal-info"),
            "meta": meta,
        }
    )


async def new_nonce(req: Request, d: FieldData, directory: Directory) -> Reply:
    """RFC 8555 §7.2: 200 to HEAD, 204 to GET (uacme insists on the 204)."""
    return Reply(None, 200 if req.method == "HEAD" else 204)


async def post_only(req: Request, d: FieldData, directory: Directory) -> Reply:
    raise AcmeProblem("malformed", "use POST (POST-as-GET with an empty payload to read)", status=405)


def protocol_paths(backend: PkiBackend) -> list[Path]:
    def wrap(fn: Any) -> Any:
        async def bound(req: Request, d: FieldData, directory: Directory) -> Reply:
            return await fn(backend, req, d, directory)  # type: ignore[no-any-return]

        return acme_handler(backend, bound)

    refused = acme_handler(backend, post_only)
    out: list[Path] = []
    for base, base_fields in BASES:

        def path(
            rel: str,
            summary: str,
            fn: Any,
            extra: dict[str, Field] | None = None,
            base: str = base,
            base_fields: dict[str, Field] = base_fields,
        ) -> Path:
            ops = {Operation.UPDATE: PathOperation(wrap(fn), summary)}
            ops[Operation.READ] = PathOperation(refused, "Refused: ACME resources are read with POST-as-GET.")
            return Path(
                base + rel,
                fields={**base_fields, **(extra or {})},
                operations=ops,
                unauthenticated=True,
                accept_unknown=True,
                synopsis=summary,
            )

        kid = {"kid": Field(_SEG, "The account id.")}
        order = {"order_id": Field(_SEG, "The order id.")}
        authz = {"authz_id": Field(_SEG, "The authorization id.")}
        out += [
            Path(
                base + "directory",
                fields=dict(base_fields),
                operations={
                    Operation.READ: PathOperation(acme_handler(backend, directory_doc), "The directory.")
                },
                unauthenticated=True,
                synopsis="The ACME directory (RFC 8555 §7.1.1).",
            ),
            Path(
                base + "new-nonce",
                fields=dict(base_fields),
                operations={
                    Operation.READ: PathOperation(acme_handler(backend, new_nonce), "A fresh nonce.")
                },
                unauthenticated=True,
                synopsis="A fresh Replay-Nonce (HEAD or GET).",
            ),
            path("new-account", "Create or find an account.", accounts.new_account),
            path("account/{kid:segment}/orders", "The account's orders.", accounts.orders_list, kid),
            path(
                "account/{kid:segment}",
                "Read, update or deactivate an account.",
                accounts.account_update,
                kid,
            ),
            path("key-change", "Roll the account key.", accounts.key_change),
            path("new-order", "Create an order.", orders.new_order),
            path(
                "order/{order_id:segment}/finalize", "Finalize an order with a CSR.", orders.finalize, order
            ),
            path(
                "order/{order_id:segment}/cert", "Download the certificate chain.", orders.certificate, order
            ),
            path(
                "order/{order_id:segment}/cert/{alternate:segment}",
                "Download an alternate certificate chain.",
                orders.certificate,
                {**order, "alternate": Field(_SEG, "1-based index of the alternate chain.")},
            ),
            path("order/{order_id:segment}", "Read an order.", orders.order_read, order),
            path(
                "authorization/{authz_id:segment}",
                "Read or deactivate an authorization.",
                orders.authz_read,
                authz,
            ),
            path(
                "challenge/{authz_id:segment}/{challenge_type:segment}",
                "Start or read a challenge.",
                orders.challenge_post,
                {**authz, "challenge_type": Field(_SEG, "http-01, dns-01 or tls-alpn-01.")},
            ),
            path("revoke-cert", "Revoke a certificate.", revoke.revoke_cert),
            Path(
                base + "renewal-info/{cert_id:segment}",
                fields={**base_fields, "cert_id": Field(_SEG, "base64url(AKI).base64url(serial)")},
                operations={
                    Operation.READ: PathOperation(
                        wrap(revoke.renewal_info),
                        "Suggested renewal window (RFC 9773).",
                    )
                },
                unauthenticated=True,
                synopsis="ACME renewal information (ARI).",
            ),
            Path(
                base + "new-eab",
                fields=dict(base_fields),
                operations={Operation.UPDATE: PathOperation(_new_eab(backend), "Create an EAB key.")},
                synopsis="Create an external account binding key for this directory.",
            ),
        ]
    return out


def _new_eab(backend: PkiBackend) -> Any:
    async def handler(req: Request, d: FieldData) -> Response:
        try:
            directory = await resolve_directory(backend, d)
        except AcmeProblem as problem:
            raise UserError(problem.detail) from None
        key = accounts.new_eab_key(directory)
        await state.save_eab(backend.storage, key)
        return Response(
            data={
                "id": key.id,
                "key_type": key.key_type,
                "key": key.key,
                "acme_directory": directory_prefix(d) + "directory",
                "created_on": state.rfc3339(key.created_on),
            }
        )

    return handler


# -- operator paths ---------------------------------------------------------------------------


def _parse_config(current: state.AcmeConfig, d: FieldData) -> state.AcmeConfig:
    cfg = state.AcmeConfig.from_json(current.to_json())
    for name in ("enabled", "allow_role_ext_key_usage"):
        value, sent = d.get_ok(name)
        if sent:
            setattr(cfg, name, bool(value))
    for name in (
        "allowed_issuers",
        "allowed_roles",
        "challenge_permitted_ip_ranges",
        "challenge_excluded_ip_ranges",
    ):
        value, sent = d.get_ok(name)
        if sent:
            setattr(cfg, name, [str(v).strip() for v in value if str(v).strip()])
    for name in ("default_directory_policy", "eab_policy", "dns_resolver"):
        value, sent = d.get_ok(name)
        if sent:
            setattr(cfg, name, str(value).strip())
    for name in ("challenge_http_port", "challenge_tls_port"):
        value, sent = d.get_ok(name)
        if sent:
            if not 1 <= int(value) <= 65535:
                raise UserError(f"{name} must be between 1 and 65535")
            setattr(cfg, name, int(value))
    value, sent = d.get_ok("max_ttl")
    if sent:
        if int(value) < 0:
            raise UserError("max_ttl must not be negative")
        cfg.max_ttl = int(value) or state.DEFAULT_MAX_TTL
    policy = cfg.default_directory_policy
    if policy not in ("sign-verbatim", "forbid") and not (policy.startswith("role:") and len(policy) > 5):
        raise UserError(f"invalid default_directory_policy {policy!r}: want {POLICIES_HELP}")
    if cfg.eab_policy not in state.EAB_POLICIES:
        raise UserError(f"invalid eab_policy {cfg.eab_policy!r}: want one of {', '.join(state.EAB_POLICIES)}")
    if not cfg.allowed_issuers or not cfg.allowed_roles:
        raise UserError("allowed_issuers and allowed_roles may not be empty (use * for any)")
    try:
        validation.ValidationSettings.from_config(cfg.to_json())
    except ValueError as err:
        raise UserError(str(err)) from None
    return cfg


def _config_view(cfg: state.AcmeConfig) -> dict[str, Any]:
    return cfg.to_json()


def operator_paths(backend: PkiBackend) -> list[Path]:
    async def read_config(req: Request, d: FieldData) -> Response:
        return Response(data=_config_view(await state.load_config(backend.storage)))

    async def write_config(req: Request, d: FieldData) -> Response:
        cfg = _parse_config(await state.load_config(backend.storage), d)
        if cfg.enabled:
            role = cfg.default_directory_policy.removeprefix("role:")
            if cfg.default_directory_policy.startswith("role:") and "*" not in cfg.allowed_roles:
                if role not in cfg.allowed_roles:
                    raise UserError(f"default directory policy role {role!r} is not in allowed_roles")
        await state.save_config(backend.storage, cfg)
        settings_changed(backend)
        return Response(data=_config_view(cfg))

    async def list_eab(req: Request, d: FieldData) -> Response:
        keys: list[str] = []
        info: dict[str, Any] = {}
        for key_id in await state.list_eab(backend.storage):
            key = await state.load_eab(backend.storage, key_id)
            if key is not None:
                keys.append(key_id)
                info[key_id] = key.view()
        return Response(data={"keys": keys, "key_info": info})

    async def delete_eab(req: Request, d: FieldData) -> Response | None:
        key_id = str(d["key_id"])
        if await state.load_eab(backend.storage, key_id) is None:
            raise UserError(f"no EAB key {key_id!r}")
        await backend.storage.delete(state.EAB + key_id)
        return None

    async def list_accounts(req: Request, d: FieldData) -> Response:
        return Response(data={"keys": await state.list_accounts(backend.storage)})

    async def account_detail(account: state.Account) -> dict[str, Any]:
        order_list = []
        for order_id in (await state.list_orders(backend.storage, account.id))[:1000]:
            order = await state.load_order(backend.storage, account.id, order_id)
            if order is None:
                continue
            order_list.append(
                {
                    "order_id": order.id,
                    "status": order.status,
                    "identifiers": [i["value"] for i in order.identifiers],
                    "cert_serial_number": order.cert_serial,
                    "cert_expiry": state.rfc3339(order.cert_expiry) if order.cert_expiry else "",
                    "order_expiry": state.rfc3339(order.expires),
                }
            )
        return {
            "key_id": account.id,
            "status": account.status,
            "contacts": list(account.contact),
            "created_time": state.rfc3339(account.created_time),
            "revoked_time": state.rfc3339(account.revoked_time) if account.revoked_time else "",
            "directory": account.directory,
            "eab": dict(account.eab or {}),
            "orders": order_list,
        }

    async def read_account(req: Request, d: FieldData) -> Response | None:
        account = await state.load_account(backend.storage, str(d["keyid"]))
        if account is None:
            return None
        return Response(data=await account_detail(account))

    async def update_account(req: Request, d: FieldData) -> Response | None:
        account = await state.load_account(backend.storage, str(d["keyid"]))
        if account is None:
            raise UserError("no such account")
        status = str(d["status"]).strip()
        if status not in ("valid", "revoked"):
            raise UserError("status must be valid or revoked")
        if status == "revoked" and account.status != "revoked":
            account.status, account.revoked_time = "revoked", time.time()
        elif status == "valid" and account.status == "revoked":
            account.status, account.revoked_time = "valid", 0.0
        await state.save_account(backend.storage, account)
        return Response(data=await account_detail(account))

    L, S = FieldType.COMMA_LIST, FieldType.STRING
    config_fields = {
        "enabled": Field(FieldType.BOOL, "Serve ACME on this mount (false: every ACME path is 404)."),
        "allowed_issuers": Field(L, "Issuers ACME may use (* for any)."),
        "allowed_roles": Field(L, "Roles ACME may use (* for any)."),
        "allow_role_ext_key_usage": Field(
            FieldType.BOOL, "Use the role's extended key usages (else ServerAuth)."
        ),
        "default_directory_policy": Field(S, f"Policy of the acme/ directory: {POLICIES_HELP}."),
        "dns_resolver": Field(S, "host:port of the DNS resolver validation uses (empty: the system's)."),
        "eab_policy": Field(S, "not-required, new-account-required or always-required."),
        "max_ttl": Field(FieldType.DURATION, "Longest certificate ACME issues (default 90 days)."),
        "challenge_http_port": Field(FieldType.INT, "Port http-01 validation connects to (80)."),
        "challenge_tls_port": Field(FieldType.INT, "Port tls-alpn-01 validation connects to (443)."),
        "challenge_permitted_ip_ranges": Field(
            L, "CIDRs validation may reach although private or loopback (e.g. 127.0.0.0/8 for tests)."
        ),
        "challenge_excluded_ip_ranges": Field(L, "CIDRs validation never reaches (wins over permitted)."),
    }
    return [
        Path(
            "config/acme",
            fields=config_fields,
            operations={
                Operation.READ: PathOperation(read_config, "Read the ACME configuration."),
                Operation.UPDATE: PathOperation(write_config, "Configure ACME."),
            },
            synopsis="ACME configuration of this mount.",
        ),
        Path(
            "eab/",
            operations={Operation.LIST: PathOperation(list_eab, "Unused EAB keys.")},
            synopsis="List external account binding keys not yet used.",
        ),
        Path(
            "eab/{key_id:segment}",
            fields={"key_id": Field(S, "The EAB key id.")},
            operations={Operation.DELETE: PathOperation(delete_eab, "Delete an unused EAB key.")},
            synopsis="Delete an external account binding key.",
        ),
        Path(
            "acme/mgmt/account/keyid/",
            operations={Operation.LIST: PathOperation(list_accounts, "ACME account ids.")},
            synopsis="List ACME accounts.",
        ),
        Path(
            "acme/mgmt/account/keyid/{keyid:segment}",
            fields={"keyid": Field(S, "The account id."), "status": Field(S, "valid or revoked.")},
            operations={
                Operation.READ: PathOperation(read_account, "Read an ACME account and its orders."),
                Operation.UPDATE: PathOperation(update_account, "Revoke or restore an ACME account."),
            },
            synopsis="Manage one ACME account.",
        ),
    ]


def paths(backend: PkiBackend) -> list[Path]:
    return operator_paths(backend) + protocol_paths(backend)
