"""Identity tokens: ``identity/oidc/{config,key,role,token,introspect,.well-known}``.

A *named key* is a signing key pair that rotates (every ``rotation_period``; lazily here,
when a token is signed after the deadline) and whose retired public halves stay
published for ``verification_ttl``. A *role* names a key, a TTL and an optional JSON
claims template, and gets a random ``client_id`` (the token's ``aud``). A token is
signed for the entity of the caller's token; introspection checks the signature against
the published keys, the issuer, the expiry, the audience and that the entity is still
enabled. The OIDC provider API (``oidc/provider/*``) is not implemented.

Storage: ``oidc/config``, ``oidc/key/<name>``, ``oidc/role/<name>``,
``oidc/private/<kid>`` (PEM, through the barrier like everything else) and
``oidc/public/<kid>`` (the JWK).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from strongroom.core.tokens import random_base62
from strongroom.durations import parse_duration
from strongroom.engines.identity import jose
from strongroom.engines.identity.store import Entity, Group, View
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.framework.fields import NAME_RE
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, RawResponse, Request, Response
from strongroom.logical.storage import Storage, get_json, put_json

if TYPE_CHECKING:
    from strongroom.engines.identity.backend import IdentityBackend

S, D, L = FieldType.STRING, FieldType.DURATION, FieldType.COMMA_LIST
DAY = 24 * 3600
REQUIRED_CLAIMS = ("iat", "aud", "exp", "iss", "sub", "namespace")
ISSUER_WARNING = (
    'If "issuer" is set explicitly, all tokens must be validated against that address, including those '
    'issued by secondary clusters. Setting issuer to "" will restore the default behavior of using the '
    "cluster's api_addr as the issuer."
)
_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def _raw_json(value: Any) -> Response:
    return Response(raw=RawResponse(json.dumps(value).encode(), content_type="application/json"))


def populate(template: str, entity: Entity | None, groups: list[Group]) -> str:
    """Vault's JSON templating: each ``{{...}}`` becomes a JSON value ("" when missing)."""
    now = int(time.time())

    def value(expr: str) -> Any:
        if expr == "time.now":
            return now
        for sign, op in (("plus", 1), ("minus", -1)):
            prefix = f"time.now.{sign}."
            if expr.startswith(prefix):
                return now + op * parse_duration(expr[len(prefix) :])
        if entity is None or not expr.startswith("identity.entity."):
            return ""
        rest = expr[len("identity.entity.") :]
        if rest in ("id", "name"):
            return getattr(entity, rest)
        if rest == "metadata":
            return dict(entity.metadata)
        if rest.startswith("metadata."):
            return entity.metadata.get(rest[len("metadata.") :], "")
        if rest in ("groups.ids", "groups.names"):
            return [g.id if rest.endswith("ids") else g.name for g in groups]
        if rest.startswith("aliases."):
            accessor, _, field = rest[len("aliases.") :].partition(".")
            alias = entity.alias_for(accessor)
            if alias is None:
                return ""
            if field in ("id", "name"):
                return getattr(alias, field)
            for attr in ("metadata", "custom_metadata"):
                if field == attr:
                    return dict(getattr(alias, attr))
                if field.startswith(attr + "."):
                    return getattr(alias, attr).get(field[len(attr) + 1 :], "")
        return ""

    return _TEMPLATE.sub(lambda m: json.dumps(value(m.group(1))), template)


def check_template(template: str) -> None:
    try:
        parsed = json.loads(populate(template, None, []))
    except ValueError as err:
        raise UserError(f"error parsing template JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise UserError("error parsing template JSON: the template must be a JSON object")
    for key in parsed:
        if key in REQUIRED_CLAIMS:
            raise UserError(
                f'top level key "{key}" not allowed. Restricted keys: {", ".join(REQUIRED_CLAIMS)}'
            )


class OIDC:
    """The handlers; state lives in the identity mount's storage."""

    def __init__(self, b: IdentityBackend) -> None:
        self.b = b
        self.storage: Storage = b.service.data.storage

    # -- config -------------------------------------------------------------------------------

    async def issuer(self) -> str:
        config = await get_json(self.storage, "oidc/config") or {}
        base = config.get("issuer") or (self.b.core.api_addr if self.b.core is not None else "")
        return f"{base}/v1/identity/oidc"

    async def read_config(self, req: Request, d: FieldData) -> Response | None:
        config = await get_json(self.storage, "oidc/config") or {}
        return Response(data={"issuer": config.get("issuer", "")})

    async def write_config(self, req: Request, d: FieldData) -> Response | None:
        if not d.sent("issuer"):
            return None
        issuer = str(d.get("issuer"))
        response = None
        if issuer:
            try:
                parts = urlsplit(issuer)
            except ValueError:
                parts = urlsplit("")
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or issuer != f"{parts.scheme}://{parts.netloc}"
            ):
                raise UserError(
                    "invalid issuer, which must include only a scheme, host, and optional port "
                    "(e.g. https://example.com:8200)"
                )
            response = Response(warnings=[ISSUER_WARNING])
        await put_json(self.storage, "oidc/config", {"issuer": issuer})
        return response

    # -- keys ---------------------------------------------------------------------------------

    async def key_exists(self, req: Request, d: FieldData) -> bool:
        return await self.storage.get(f"oidc/key/{d.get('name')}") is not None

    async def _new_signing_key(self, storage: Storage, algorithm: str) -> str:
        kid = str(uuid.uuid4())
        private = jose.generate(algorithm)
        await put_json(
            storage, f"oidc/private/{kid}", {"algorithm": algorithm, "pem": jose.private_pem(private)}
        )
        await put_json(storage, f"oidc/public/{kid}", jose.public_jwk(private, kid, algorithm))
        return kid

    @staticmethod
    def _retire(key: dict[str, Any], kid: str, ttl: int) -> None:
        for entry in key["key_ring"]:
            if entry["kid"] == kid and not entry["expire_at"]:
                entry["expire_at"] = time.time() + ttl

    async def write_key(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name"))
        create = req.operation == Operation.CREATE
        async with self.storage.transaction() as txn:
            key: dict[str, Any] = (None if create else await get_json(txn, f"oidc/key/{name}")) or {
                "key_ring": [],
                "signing_kid": "",
                "algorithm": "",
                "next_rotation": 0.0,
                "rotation_period": DAY,
                "verification_ttl": DAY,
                "allowed_client_ids": [],
            }
            for field in ("rotation_period", "verification_ttl", "allowed_client_ids", "algorithm"):
                if d.sent(field) or (create and field == "algorithm"):
                    key[field] = d.get(field)
            if key["rotation_period"] < 60:
                raise UserError("rotation_period must be at least one minute")
            if key["verification_ttl"] > 10 * key["rotation_period"]:
                raise UserError("verification_ttl cannot be longer than 10x rotation_period")
            if key["algorithm"] not in jose.ALGORITHMS:
                raise UserError(f'unknown signing algorithm "{key["algorithm"]}"')
            next_rotation = time.time() + key["rotation_period"]
            if not key["next_rotation"] or next_rotation < key["next_rotation"]:
                key["next_rotation"] = next_rotation
            previous = (
                await get_json(txn, f"oidc/private/{key['signing_kid']}") if key["signing_kid"] else None
            )
            if previous is None or previous["algorithm"] != key["algorithm"]:
                if key["signing_kid"]:
                    self._retire(key, key["signing_kid"], key["verification_ttl"])
                key["signing_kid"] = await self._new_signing_key(txn, key["algorithm"])
                key["key_ring"].append({"kid": key["signing_kid"], "expire_at": 0.0})
            await put_json(txn, f"oidc/key/{name}", key)
        return None

    async def _rotate(self, storage: Storage, name: str, key: dict[str, Any], verification_ttl: int) -> None:
        self._retire(key, key["signing_kid"], verification_ttl)
        key["signing_kid"] = await self._new_signing_key(storage, key["algorithm"])
        key["key_ring"].append({"kid": key["signing_kid"], "expire_at": 0.0})
        key["next_rotation"] = time.time() + key["rotation_period"]
        await put_json(storage, f"oidc/key/{name}", key)

    async def rotate_key(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name"))
        async with self.storage.transaction() as txn:
            key = await get_json(txn, f"oidc/key/{name}")
            if key is None:
                raise UserError(f'no named key found at "{name}"')
            ttl = d.get("verification_ttl") if d.sent("verification_ttl") else key["verification_ttl"]
            await self._rotate(txn, name, key, ttl)
        return None

    async def read_key(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name"))
        key = await get_json(self.storage, f"oidc/key/{name}")
        if key is None:
            raise UserError(f'no named key found at "{name}"')
        return Response(
            data={
                "rotation_period": key["rotation_period"],
                "verification_ttl": key["verification_ttl"],
                "algorithm": key["algorithm"],
                "allowed_client_ids": key["allowed_client_ids"] or None,
            }
        )

    async def delete_key(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name"))
        async with self.storage.transaction() as txn:
            users = []
            for role_name in await txn.list("oidc/role/"):
                role = await get_json(txn, f"oidc/role/{role_name}")
                if role is not None and role.get("key") == name:
                    users.append(role_name)
            if users:
                raise UserError(
                    f'unable to delete key "{name}" because it is currently referenced by these roles: '
                    + ", ".join(users)
                )
            key = await get_json(txn, f"oidc/key/{name}")
            for entry in key["key_ring"] if key else []:
                await txn.delete(f"oidc/private/{entry['kid']}")
                await txn.delete(f"oidc/public/{entry['kid']}")
            await txn.delete(f"oidc/key/{name}")
        return None

    async def list_keys(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list("oidc/key/")})

    async def jwks(self) -> list[dict[str, Any]]:
        """Public keys still in some key ring and not past their verification TTL."""
        now = time.time()
        out = []
        for name in await self.storage.list("oidc/key/"):
            key = await get_json(self.storage, f"oidc/key/{name}")
            for entry in key["key_ring"] if key else []:
                if entry["expire_at"] and entry["expire_at"] < now:
                    continue
                jwk = await get_json(self.storage, f"oidc/public/{entry['kid']}")
                if jwk is not None:
                    out.append(jwk)
        return out

    # -- roles --------------------------------------------------------------------------------

    async def role_exists(self, req: Request, d: FieldData) -> bool:
        return await self.storage.get(f"oidc/role/{d.get('name')}") is not None

    async def write_role(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name"))
        create = req.operation == Operation.CREATE
        async with self.storage.transaction() as txn:
            role: dict[str, Any] = (None if create else await get_json(txn, f"oidc/role/{name}")) or {
                "key": "",
                "template": "",
                "ttl": DAY,
                "client_id": "",
            }
            for field in ("key", "template", "ttl"):
                if d.sent(field):
                    role[field] = d.get(field)
            if not role["key"]:
                raise UserError("the key parameter is required")
            if not NAME_RE.match(role["key"]):
                raise UserError("invalid key name")
            try:
                role["template"] = base64.b64decode(role["template"], validate=True).decode()
            except ValueError:  # not base64 (or not text): the template is the JSON itself
                pass
            if role["template"]:
                check_template(role["template"])
            role["client_id"] = role["client_id"] or random_base62(26)
            await put_json(txn, f"oidc/role/{name}", role)
        return None

    async def read_role(self, req: Request, d: FieldData) -> Response | None:
        role = await get_json(self.storage, f"oidc/role/{d.get('name')}")
        if role is None:
            return None
        return Response(
            data={
                "client_id": role["client_id"],
                "key": role["key"],
                "template": role["template"],
                "ttl": role["ttl"],
            }
        )

    async def delete_role(self, req: Request, d: FieldData) -> Response | None:
        await self.storage.delete(f"oidc/role/{d.get('name')}")
        return None

    async def list_roles(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list("oidc/role/")})

    # -- tokens -------------------------------------------------------------------------------

    async def generate_token(self, req: Request, d: FieldData) -> Response | None:
        role_name = str(d.get("name"))
        role = await get_json(self.storage, f"oidc/role/{role_name}")
        if role is None:
            raise UserError(f'role "{role_name}" not found')
        if not req.entity_id:
            raise UserError("no entity associated with the request's token")
        async with self.storage.transaction() as txn:
            key = await get_json(txn, f"oidc/key/{role['key']}")
            if key is None:
                raise UserError(f'key "{role["key"]}" not found')
            allowed = key["allowed_client_ids"] or []
            if "*" not in allowed and role["client_id"] not in allowed:
                raise UserError(
                    f'the key "{role["key"]}" does not list the client ID of the role "{role_name}" as an '
                    "allowed client ID"
                )
            if time.time() > key["next_rotation"]:
                await self._rotate(txn, role["key"], key, key["verification_ttl"])
            private = await get_json(txn, f"oidc/private/{key['signing_kid']}")
        view = View(self.storage)
        entity = await view.entity(req.entity_id)
        if entity is None:
            raise UserError("entity associated with the request's token was not found")
        direct, inherited = await view.groups_of_entity(entity.id)
        now = int(time.time())
        claims: dict[str, Any] = {}
        if role["template"]:
            try:
                extra = json.loads(populate(role["template"], entity, [*direct, *inherited]))
            except ValueError:
                extra = {}  # as in Vault, a template that fails at run time adds nothing
            if isinstance(extra, dict):
                claims.update({k: v for k, v in extra.items() if k not in REQUIRED_CLAIMS})
        claims.update(
            iss=await self.issuer(),
            namespace="root",
            sub=entity.id,
            aud=role["client_id"],
            exp=now + int(role["ttl"]),
            iat=now,
        )
        token = jose.sign(jose.load_private(private["pem"]), key["algorithm"], key["signing_kid"], claims)
        return Response(data={"token": token, "client_id": role["client_id"], "ttl": role["ttl"]})

    async def introspect(self, req: Request, d: FieldData) -> Response | None:
        def answer(error: str = "") -> Response:
            return _raw_json({"active": False, "error": error} if error else {"active": True})

        try:
            claims = jose.verify(str(d.get("token")), await self.jwks())
        except jose.MalformedToken as err:
            return answer(f"error parsing token: {err}")
        if claims is None:
            return answer("unable to validate the token signature")
        if claims.get("iss") != await self.issuer():
            return answer("error validating claims: validation failed, invalid issuer claim (iss)")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < time.time():
            return answer("error validating claims: validation failed, token is expired (exp)")
        client_id = str(d.get("client_id"))
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if client_id and client_id not in audiences:
            return answer("error validating claims: validation failed, invalid audience claim (aud)")
        entity = await View(self.storage).entity(str(claims.get("sub", "")))
        if entity is None:
            return answer("entity was not found")
        if entity.disabled:
            return answer("entity is disabled")
        return answer()

    async def discovery(self, req: Request, d: FieldData) -> Response | None:
        issuer = await self.issuer()
        return _raw_json(
            {
                "issuer": issuer,
                "jwks_uri": issuer + "/.well-known/keys",
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": list(jose.ALGORITHMS),
            }
        )

    async def public_keys(self, req: Request, d: FieldData) -> Response | None:
        return _raw_json({"keys": await self.jwks()})


def paths(b: IdentityBackend) -> list[Path]:
    o = OIDC(b)
    name = {"name": Field(S, "Name of the key or role")}
    return [
        Path(
            "oidc/config",
            {
                Operation.READ: PathOperation(o.read_config, "Read the OIDC configuration"),
                Operation.UPDATE: PathOperation(o.write_config, "Update the OIDC configuration"),
            },
            fields={"issuer": Field(S, "Issuer URL to be used in the iss claim of the token.")},
            synopsis="OIDC configuration",
        ),
        Path("oidc/key/", {Operation.LIST: PathOperation(o.list_keys, "List OIDC keys")}),
        Path(
            "oidc/key/{name}/rotate",
            {Operation.UPDATE: PathOperation(o.rotate_key, "Rotate a named OIDC key.")},
            fields={
                **name,
                "verification_ttl": Field(D, "Overrides the key's verification_ttl for this rotation."),
            },
        ),
        Path(
            "oidc/key/{name}",
            {
                Operation.CREATE: PathOperation(o.write_key, "Create an OIDC key"),
                Operation.UPDATE: PathOperation(o.write_key, "Update an OIDC key"),
                Operation.READ: PathOperation(o.read_key, "Read an OIDC key"),
                Operation.DELETE: PathOperation(o.delete_key, "Delete an OIDC key"),
            },
            fields={
                **name,
                "rotation_period": Field(D, "How often to generate a new keypair.", default=DAY),
                "verification_ttl": Field(
                    D, "How long the public half of a key stays available after rotation.", default=DAY
                ),
                "algorithm": Field(
                    S, "Signing algorithm to use. This will default to RS256.", default="RS256"
                ),
                "allowed_client_ids": Field(L, "Role client ids allowed to use this key; '*' allows all."),
            },
            existence_check=o.key_exists,
            synopsis="CRUD operations for OIDC keys.",
        ),
        Path(
            "oidc/.well-known/openid-configuration",
            {Operation.READ: PathOperation(o.discovery, "Query OIDC configurations")},
            unauthenticated=True,
        ),
        Path(
            "oidc/.well-known/keys",
            {Operation.READ: PathOperation(o.public_keys, "Retrieve public keys")},
            unauthenticated=True,
        ),
        Path(
            "oidc/token/{name}",
            {Operation.READ: PathOperation(o.generate_token, "Generate an OIDC token")},
            fields=name,
        ),
        Path("oidc/role/", {Operation.LIST: PathOperation(o.list_roles, "List configured OIDC roles")}),
        Path(
            "oidc/role/{name}",
            {
                Operation.CREATE: PathOperation(o.write_role, "Create an OIDC role"),
                Operation.UPDATE: PathOperation(o.write_role, "Update an OIDC role"),
                Operation.READ: PathOperation(o.read_role, "Read an OIDC role"),
                Operation.DELETE: PathOperation(o.delete_role, "Delete an OIDC role"),
            },
            fields={
                **name,
                "key": Field(S, "The OIDC key to use for generating tokens."),
                "template": Field(S, "The template string to use for generating tokens (JSON or base64)."),
                "ttl": Field(D, "TTL of the tokens generated against the role.", default=DAY),
            },
            existence_check=o.role_exists,
            synopsis="CRUD operations on OIDC Roles",
        ),
        Path(
            "oidc/introspect",
            {Operation.UPDATE: PathOperation(o.introspect, "Verify the authenticity of an OIDC token")},
            fields={
                "token": Field(S, "Token to verify"),
                "client_id": Field(S, "Optional client_id to verify"),
            },
        ),
    ]
