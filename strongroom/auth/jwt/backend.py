"""The jwt / oidc auth method: paths, config and roles, JWT login and the OIDC auth-code flow.

One backend serves both mount types, as in Vault (the ``oidc`` type is the same plugin).
A ``jwt`` role takes a signed token in ``login``; an ``oidc`` role goes through
``oidc/auth_url`` -> the provider -> ``oidc/callback``, where the code is exchanged for an
ID token. Both end in the same claim checks (``claims.py``) and the same Auth.

Pending OIDC logins (state, nonce, PKCE verifier) live in memory for ten minutes, like
Vault's: a restart only costs users a retry, and nothing secret reaches storage.
Failed validations answer 403 with Vault's reason (the project's security table, row 29);
malformed requests answer 400. No error ever contains the token or a provider's body.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from strongroom.auth.common import TokenParams, check_cidrs, token_fields
from strongroom.auth.jwt import claims as rules
from strongroom.auth.jwt.keys import (
    DEFAULT_ALGS,
    Fetcher,
    KeySet,
    KeySourceError,
    RemoteKeys,
    SignatureError,
    parse_public_key,
    ssl_context,
    token_kid,
    validate_algs,
    verify_signature,
)
from strongroom.durations import parse_duration
from strongroom.framework import Display, Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import PermissionDenied, UserError
from strongroom.logical.request import Auth, Operation, Request, Response
from strongroom.logical.storage import get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.auth.jwt")

CONFIG_KEY = "config"
ROLE_PREFIX = "role/"
STATE_TTL_S = 600.0
MAX_PENDING_STATES = 10_000
LOGIN_FAILED = "Vault login failed."
VERBOSE_WARNING = (
    "verbose_oidc_logging has been enabled for this role. This is not recommended in production "
    "since sensitive information may be present in OIDC responses."
)

_S = FieldType.STRING
_L = FieldType.COMMA_LIST

CONFIG_FIELDS: dict[str, Field] = {
    "oidc_discovery_url": Field(_S, "OIDC Discovery URL, without any .well-known component (base path)."),
    "oidc_discovery_ca_pem": Field(_S, "The CA certificate or chain of certificates, in PEM format."),
    "oidc_client_id": Field(_S, "The OAuth Client ID configured with your OIDC provider."),
    "oidc_client_secret": Field(
        _S, "The OAuth Client Secret configured with your OIDC provider.", sensitive=True
    ),
    "oidc_response_mode": Field(_S, "The response mode to be used in the OAuth2 request."),
    "oidc_response_types": Field(
        _L, "The response types to request. Allowed values are 'code' and 'id_token'."
    ),
    "jwks_url": Field(_S, "JWKS URL to use to authenticate signatures."),
    "jwks_ca_pem": Field(_S, "The CA certificate or chain of certificates, in PEM format."),
    "jwt_validation_pubkeys": Field(
        _L, "A list of PEM-encoded public keys to use to authenticate signatures."
    ),
    "jwt_supported_algs": Field(_L, "A list of supported signing algorithms. Defaults to RS256."),
    "bound_issuer": Field(_S, "The value against which to match the 'iss' claim in a JWT."),
    "default_role": Field(_S, "The default role to use if none is provided during login."),
    "provider_config": Field(FieldType.MAP, "Provider-specific configuration."),
    "namespace_in_state": Field(FieldType.BOOL, "Pass namespace in the OIDC state parameter."),
}

ROLE_FIELDS: dict[str, Field] = {
    "name": Field(_S, "Name of the role."),
    "role_type": Field(_S, "Type of the role, either 'jwt' or 'oidc'."),
    "user_claim": Field(_S, "The claim to use for the Identity entity alias name"),
    "user_claim_json_pointer": Field(
        FieldType.BOOL, "If true, the user_claim value will use JSON pointer syntax."
    ),
    "bound_audiences": Field(_L, "Comma-separated list of 'aud' claims that are valid for login."),
    "bound_subject": Field(_S, "The 'sub' claim that is valid for login."),
    "bound_claims": Field(FieldType.MAP, "Map of claims/values which must match for login"),
    "bound_claims_type": Field(
        _S, "How to interpret values in the map of claims/values: 'string' or 'glob'."
    ),
    "groups_claim": Field(_S, "The claim to use for the Identity group alias names"),
    "claim_mappings": Field(
        FieldType.MAP, "Mappings of claims (key) that will be copied to a metadata field."
    ),
    "clock_skew_leeway": Field(FieldType.ANY, "Leeway for all claims, in seconds (default 60, -1: none)."),
    "expiration_leeway": Field(FieldType.ANY, "Leeway added to 'exp', in seconds (default 150, -1: none)."),
    "not_before_leeway": Field(FieldType.ANY, "Leeway added to 'nbf', in seconds (default 150, -1: none)."),
    "allowed_redirect_uris": Field(_L, "Comma-separated list of allowed values for redirect_uri"),
    "oidc_scopes": Field(_L, "Comma-separated list of OIDC scopes"),
    "verbose_oidc_logging": Field(FieldType.BOOL, "Log received OIDC tokens and claims when debug logging."),
    "max_age": Field(FieldType.DURATION, "Allowed elapsed time since the user last authenticated."),
    "callback_mode": Field(_S, "OIDC callback mode: 'client', 'direct' or 'device'."),
    **token_fields("policies", "bound_cidrs", "ttl", "max_ttl", "period"),
}

ROLE_DEFAULTS: dict[str, Any] = {
    "role_type": "oidc",
    "user_claim": "",
    "user_claim_json_pointer": False,
    "bound_audiences": [],
    "bound_subject": "",
    "bound_claims": {},
    "bound_claims_type": "string",
    "groups_claim": "",
    "claim_mappings": {},
    "clock_skew_leeway": 60,
    "expiration_leeway": 150,
    "not_before_leeway": 150,
    "allowed_redirect_uris": [],
    "oidc_scopes": [],
    "verbose_oidc_logging": False,
    "max_age": 0,
    "callback_mode": "client",
}


def _leeway(name: str, raw: Any) -> int:
    """A leeway in seconds: an integer (-1 disables it) or a duration string."""
    if isinstance(raw, bool):
        raise UserError(f"error converting input for field {name!r}: expected type duration")
    if isinstance(raw, int | float):
        return int(raw)
    text = str(raw).strip()
    try:
        return -parse_duration(text[1:]) if text.startswith("-") else parse_duration(text)
    except ValueError:
        raise UserError(f"error converting input for field {name!r}: expected type duration") from None


def _op(
    handler: Callable[[Request, FieldData], Awaitable[Response | None]], summary: str = ""
) -> PathOperation:
    return PathOperation(handler, summary=summary)


@dataclass
class PendingLogin:
    """One started OIDC login, keyed by its state."""

    role: str
    redirect_uri: str
    nonce: str
    code_verifier: str
    client_nonce: str
    expires: float


class JWTBackend(FrameworkBackend):
    """One ``jwt`` or ``oidc`` mount."""

    backend_type = "jwt"
    help_text = (
        "The JWT backend plugin allows authentication using JWTs (including OIDC) and the OIDC "
        "authorization code flow."
    )
    fetcher_class: type[Fetcher] = Fetcher

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        self.remote = RemoteKeys(self.fetcher_class())
        self.pending: dict[str, PendingLogin] = {}
        super().__init__(config)

    # -- paths -------------------------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        disp = Display(prefix="jwt")
        return [
            Path(
                "config",
                {
                    Operation.READ: _op(
                        self._config_read, "Read the current JWT authentication backend configuration."
                    ),
                    Operation.UPDATE: _op(self._config_write, "Configure the JWT authentication backend."),
                },
                fields=CONFIG_FIELDS,
                synopsis="Configure the JWT authentication backend.",
                display=disp,
            ),
            Path(
                "role/",
                {Operation.LIST: _op(self._role_list, "Lists all the roles registered with the backend.")},
                synopsis="Lists all the roles registered with the backend.",
                display=disp,
            ),
            Path(
                "role/{name:segment}",
                {
                    Operation.READ: _op(self._role_read, "Read a role."),
                    Operation.CREATE: _op(self._role_write, "Register a role with the backend."),
                    Operation.UPDATE: _op(self._role_write, "Register a role with the backend."),
                    Operation.DELETE: _op(self._role_delete, "Delete a role."),
                },
                fields=ROLE_FIELDS,
                existence_check=self._role_exists,
                synopsis="Register a role with the backend.",
                display=disp,
            ),
            Path(
                "login",
                {Operation.UPDATE: _op(self._login, "Authenticates to Vault using a JWT (or OIDC) token.")},
                fields={
                    "role": Field(_S, "The role to log in against."),
                    "jwt": Field(_S, "The signed JWT to validate.", sensitive=True),
                },
                unauthenticated=True,
                synopsis="Authenticates to Vault using a JWT (or OIDC) token.",
                display=disp,
            ),
            Path(
                "oidc/auth_url",
                {
                    Operation.UPDATE: _op(
                        self._auth_url, "Request an authorization URL to start an OIDC login flow."
                    )
                },
                fields={
                    "role": Field(_S, "The role to issue an OIDC authorization URL against."),
                    "redirect_uri": Field(_S, "The OAuth redirect_uri to use in the authorization URL."),
                    "client_nonce": Field(
                        _S, "Optional client-provided nonce that must match during callback."
                    ),
                },
                unauthenticated=True,
                synopsis="Request an authorization URL to start an OIDC login flow.",
                display=disp,
            ),
            Path(
                "oidc/callback",
                {
                    Operation.READ: _op(self._callback, "Callback endpoint to complete an OIDC login."),
                    Operation.UPDATE: _op(self._callback, "Callback endpoint to handle form_posts."),
                },
                fields={
                    "state": Field(_S, "The state parameter returned by the provider.", query=True),
                    "code": Field(_S, "The authorization code.", query=True, sensitive=True),
                    "id_token": Field(_S, "The ID token (form_post response mode).", sensitive=True),
                    "client_nonce": Field(_S, "The client nonce given to auth_url.", query=True),
                },
                unauthenticated=True,
                synopsis="Callback endpoint to complete an OIDC login.",
                display=disp,
            ),
        ]

    # -- config ------------------------------------------------------------------------------

    async def _config(self) -> dict[str, Any] | None:
        raw = await get_json(self.storage, CONFIG_KEY)
        return raw if isinstance(raw, dict) else None

    async def _config_write(self, req: Request, d: FieldData) -> Response | None:
        existing = await self._config()
        cfg: dict[str, Any] = {name: d.get(name) for name in CONFIG_FIELDS}
        if not d.sent("namespace_in_state"):
            cfg["namespace_in_state"] = True if existing is None else bool(existing.get("namespace_in_state"))
        methods = sum(bool(cfg[k]) for k in ("oidc_discovery_url", "jwt_validation_pubkeys", "jwks_url"))
        client_id, client_secret = cfg["oidc_client_id"], cfg["oidc_client_secret"]
        if methods != 1:
            raise UserError(
                "exactly one of 'jwt_validation_pubkeys', 'jwks_url', 'jwks_pairs' or 'oidc_discovery_url' must be set"
            )
        if bool(client_id) != bool(client_secret):
            raise UserError("both 'oidc_client_id' and 'oidc_client_secret' must be set for OIDC")
        self.remote.reset()
        if cfg["oidc_discovery_url"]:
            try:
                # like go-oidc: the document must be served; its keys are fetched at login
                await self.remote.discovery(cfg["oidc_discovery_url"], cfg["oidc_discovery_ca_pem"])
            except KeySourceError as err:
                log.warning("error checking oidc discovery URL: %s", err)
                raise UserError("error checking oidc discovery URL") from None
        elif client_id:
            raise UserError("'oidc_discovery_url' must be set for OIDC")
        elif cfg["jwks_url"]:
            try:
                ssl_context(cfg["jwks_ca_pem"])
            except KeySourceError:
                raise UserError("error checking jwks_ca_pem") from None
            try:
                await self.remote.key_set(cfg["jwks_url"], cfg["jwks_ca_pem"])
            except KeySourceError as err:
                log.warning("error checking jwks URL: %s", err)
                raise UserError(f"error checking jwks URL {cfg['jwks_url']}") from None
        else:
            for pem in cfg["jwt_validation_pubkeys"]:
                try:
                    parse_public_key(pem)
                except ValueError as err:
                    raise UserError(f"error parsing public key: {err}") from None
        try:
            validate_algs(cfg["jwt_supported_algs"])
        except ValueError as err:
            raise UserError(f"invalid jwt_supported_algs: {err}") from None
        types = cfg["oidc_response_types"]
        if any(t not in ("code", "id_token") for t in types):
            raise UserError(f"invalid response_types {types}. 'code' and 'id_token' are allowed")
        mode = cfg["oidc_response_mode"]
        if mode in ("", "query"):
            if "id_token" in types:
                raise UserError("query response_mode may not be used with an id_token response_type")
        elif mode != "form_post":
            raise UserError(f'invalid response_mode: "{mode}"')
        await put_json(self.storage, CONFIG_KEY, cfg)
        return None

    async def _config_read(self, req: Request, d: FieldData) -> Response | None:
        cfg = await self._config()
        if cfg is None:
            return None
        data = {
            k: cfg.get(k, CONFIG_FIELDS[k].type.zero()) for k in CONFIG_FIELDS if k != "oidc_client_secret"
        }
        data["jwks_pairs"] = []
        data["unsupported_critical_cert_extensions"] = []
        return Response(data=data)

    # -- roles -------------------------------------------------------------------------------

    async def _role(self, name: str) -> dict[str, Any] | None:
        raw = await get_json(self.storage, ROLE_PREFIX + name)
        return raw if isinstance(raw, dict) else None

    async def _role_exists(self, req: Request, d: FieldData) -> bool:
        return await self._role(str(d.get("name"))) is not None

    async def _role_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list(ROLE_PREFIX)})

    async def _role_delete(self, req: Request, d: FieldData) -> Response | None:
        await self.storage.delete(ROLE_PREFIX + str(d.get("name")))
        return None

    async def _role_read(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(str(d.get("name")))
        if role is None:
            return None
        data = {k: role.get(k, default) for k, default in ROLE_DEFAULTS.items()}
        data.update(TokenParams.from_json(role.get("token")).to_api())
        return Response(data=data)

    async def _role_write(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name"))
        if not name:
            raise UserError("missing role name")
        existing = await self._role(name)
        role: dict[str, Any] = dict(ROLE_DEFAULTS) if existing is None else dict(existing)
        role_type = (
            str(d.get("role_type") or "oidc")
            if d.sent("role_type") or existing is None
            else role["role_type"]
        )
        if role_type not in ("jwt", "oidc"):
            raise UserError(f"invalid 'role_type': {role_type}")
        role["role_type"] = role_type
        role["token"] = TokenParams.from_fields(d, TokenParams.from_json(role.get("token"))).to_json()
        for leeway in ("clock_skew_leeway", "expiration_leeway", "not_before_leeway"):
            if d.sent(leeway):
                role[leeway] = _leeway(leeway, d.get(leeway))
        for simple in (
            "bound_audiences",
            "bound_subject",
            "verbose_oidc_logging",
            "max_age",
            "user_claim",
            "user_claim_json_pointer",
            "groups_claim",
            "oidc_scopes",
            "allowed_redirect_uris",
        ):
            if d.sent(simple):
                role[simple] = d.get(simple)
        if d.sent("bound_claims_type"):
            role["bound_claims_type"] = str(d.get("bound_claims_type"))
        if role["bound_claims_type"] not in ("string", "glob"):
            raise UserError(f"invalid 'bound_claims_type': {role['bound_claims_type']}")
        if d.sent("bound_claims"):
            role["bound_claims"] = d.get("bound_claims")
        for claim, values in role["bound_claims"].items():
            listed = rules.as_list(values)
            if listed is None:
                raise UserError(f"claim is not a string or list: {claim}")
            if role["bound_claims_type"] == "glob" and not all(isinstance(v, str) for v in listed):
                raise UserError(f"claim is not a string: {claim}")
        if d.sent("claim_mappings"):
            mappings = d.get("claim_mappings")
            targets: set[str] = set()
            for target in mappings.values():
                if not isinstance(target, str):
                    raise UserError("claim_mappings values must be strings")
                if target in rules.RESERVED_METADATA:
                    raise UserError(
                        f'metadata key "{target}" is reserved and may not be a mapping destination'
                    )
                if target in targets:
                    raise UserError(f'multiple keys are mapped to metadata key "{target}"')
                targets.add(target)
            role["claim_mappings"] = mappings
        if not role["user_claim"]:
            raise UserError("a user claim must be defined on the role")
        if d.sent("callback_mode"):
            role["callback_mode"] = str(d.get("callback_mode"))
        if role["callback_mode"] not in ("client", "direct", "device"):
            raise UserError(f"invalid 'callback_mode': {role['callback_mode']}")
        if role_type == "oidc" and not role["allowed_redirect_uris"]:
            raise UserError("'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.")
        token = TokenParams.from_json(role["token"])
        if role_type != "oidc" and not (
            role["bound_audiences"] or token.bound_cidrs or role["bound_subject"] or role["bound_claims"]
        ):
            raise UserError("must have at least one bound constraint when creating/updating a role")
        await put_json(self.storage, ROLE_PREFIX + name, role)
        if role["verbose_oidc_logging"]:
            return Response(warnings=[VERBOSE_WARNING])
        return None

    async def _role_for_login(self, d: FieldData, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = str(d.get("role") or "") or str(cfg.get("default_role") or "")
        if not name:
            raise UserError("missing role")
        role = await self._role(name)
        if role is None:
            raise UserError(f'role "{name}" could not be found')
        return name, role

    # -- JWT login ---------------------------------------------------------------------------

    async def _login(self, req: Request, d: FieldData) -> Response | None:
        cfg = await self._config()
        if cfg is None:
            raise UserError("could not load configuration")
        name, role = await self._role_for_login(d, cfg)
        if role.get("role_type") == "oidc":
            raise UserError("role with oidc role_type is not allowed")
        token = str(d.get("jwt") or "")
        if not token:
            raise UserError("missing token")
        params = TokenParams.from_json(role.get("token"))
        if params.bound_cidrs and not check_cidrs(req.connection.remote_addr, params.bound_cidrs):
            raise PermissionDenied()
        all_claims = await self._verified_claims(cfg, token)
        issuer = cfg.get("bound_issuer") or ""
        if cfg.get("oidc_discovery_url"):
            issuer = (await self._discovery(cfg)).issuer
        strict = not cfg.get("oidc_discovery_url")
        return self._authorize(name, role, all_claims, issuer=issuer, strict_audience=strict)

    async def _discovery(self, cfg: dict[str, Any]) -> Any:
        try:
            return await self.remote.discovery(
                cfg["oidc_discovery_url"], cfg.get("oidc_discovery_ca_pem") or ""
            )
        except KeySourceError as err:
            raise UserError(f"error getting provider for login operation: {err}") from None

    async def _verified_claims(self, cfg: dict[str, Any], token: str) -> dict[str, Any]:
        """The token's claims once its signature checks out against the configured keys."""
        algs = list(cfg.get("jwt_supported_algs") or DEFAULT_ALGS)
        pems = list(cfg.get("jwt_validation_pubkeys") or [])
        if pems:
            keys = [parse_public_key(p) for p in pems]
            try:
                return verify_signature(token, keys, algs)
            except SignatureError:
                raise PermissionDenied("no known key successfully validated the token signature") from None
        if cfg.get("oidc_discovery_url"):
            url, ca = (await self._discovery(cfg)).jwks_uri, cfg.get("oidc_discovery_ca_pem") or ""
        else:
            url, ca = str(cfg.get("jwks_url") or ""), cfg.get("jwks_ca_pem") or ""
        kid = token_kid(token)
        try:
            key_set: KeySet = await self.remote.key_set(url, ca, want_kid=kid)
        except KeySourceError as err:
            raise UserError(f"error fetching jwks keyset: {err}") from None
        candidates = key_set.candidates(kid)
        try:
            if not candidates:
                raise SignatureError(f"no key in the key set matches the token's kid {kid[:64]!r}")
            return verify_signature(token, candidates, algs)
        except SignatureError as err:
            raise PermissionDenied(f"error verifying token: {err}") from None

    def _authorize(
        self,
        name: str,
        role: dict[str, Any],
        all_claims: dict[str, Any],
        *,
        issuer: str,
        strict_audience: bool,
        audience: list[str] | None = None,
    ) -> Response:
        """Every claim rule of the role, then the Auth; failures are 403 with Vault's reason."""
        try:
            rules.TimeRules(
                int(role.get("clock_skew_leeway", 60)),
                int(role.get("expiration_leeway", 150)),
                int(role.get("not_before_leeway", 150)),
            ).check(all_claims)
            if issuer and all_claims.get("iss") != issuer:
                raise rules.ClaimError("validation failed, invalid issuer claim (iss)")
            subject = role.get("bound_subject") or ""
            if subject and all_claims.get("sub") != subject:
                raise rules.ClaimError("validation failed, invalid subject claim (sub)")
            bound_aud = list(audience if audience is not None else role.get("bound_audiences") or [])
            rules.check_audience(bound_aud, all_claims.get("aud"), strict=strict_audience)
            rules.check_bound_claims(
                str(role.get("bound_claims_type") or "string"),
                dict(role.get("bound_claims") or {}),
                all_claims,
            )
        except rules.ClaimError as err:
            raise PermissionDenied(f"error validating claims: {err}") from None
        try:
            who = rules.identity(
                all_claims,
                user_claim=str(role.get("user_claim") or ""),
                json_pointer=bool(role.get("user_claim_json_pointer")),
                groups_claim=str(role.get("groups_claim") or ""),
                claim_mappings={str(k): str(v) for k, v in (role.get("claim_mappings") or {}).items()},
            )
        except rules.ClaimError as err:
            raise PermissionDenied(str(err)) from None
        auth = Auth(
            metadata={"role": name, **who.metadata},
            display_name=who.name,
            alias_name=who.name,
            alias_metadata=dict(who.metadata),
            group_alias_names=who.groups,
            internal_data={"role": name},
        )
        TokenParams.from_json(role.get("token")).apply(auth)
        return Response(auth=auth)

    # -- OIDC auth-code flow -----------------------------------------------------------------

    def _prune_pending(self) -> None:
        now = time.monotonic()
        for state in [s for s, p in self.pending.items() if p.expires <= now]:
            del self.pending[state]

    async def _auth_url(self, req: Request, d: FieldData) -> Response | None:
        cfg = await self._config()
        if cfg is None:
            raise UserError("could not load configuration")
        name, role = await self._role_for_login(d, cfg)
        redirect_uri = str(d.get("redirect_uri") or "")
        if not redirect_uri:
            raise UserError("missing redirect_uri")
        if role.get("role_type") != "oidc":
            raise UserError(f'role "{name}" is not an OIDC role')
        if redirect_uri not in (role.get("allowed_redirect_uris") or []):
            raise UserError(f"unauthorized redirect_uri: {redirect_uri}")
        if not cfg.get("oidc_discovery_url") or not cfg.get("oidc_client_id"):
            raise UserError("OIDC is not configured on this mount (oidc_discovery_url and oidc_client_id)")
        try:
            found = await self.remote.discovery(
                cfg["oidc_discovery_url"], cfg.get("oidc_discovery_ca_pem") or ""
            )
        except KeySourceError as err:
            raise UserError(f"error getting provider for login operation: {err}") from None
        self._prune_pending()
        if len(self.pending) >= MAX_PENDING_STATES:
            raise UserError("too many OIDC logins in progress; try again later")
        state = secrets.token_urlsafe(24)
        nonce = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        self.pending[state] = PendingLogin(
            role=name,
            redirect_uri=redirect_uri,
            nonce=nonce,
            code_verifier=verifier,
            client_nonce=str(d.get("client_nonce") or ""),
            expires=time.monotonic() + STATE_TTL_S,
        )
        scopes = ["openid", *[s for s in role.get("oidc_scopes") or [] if s != "openid"]]
        query: dict[str, str] = {
            "client_id": cfg["oidc_client_id"],
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "nonce": nonce,
            "redirect_uri": redirect_uri,
            "response_type": " ".join(cfg.get("oidc_response_types") or ["code"]),
            "scope": " ".join(scopes),
            "state": state,
        }
        if cfg.get("oidc_response_mode"):
            query["response_mode"] = cfg["oidc_response_mode"]
        endpoint = found.authorization_endpoint
        sep = "&" if "?" in endpoint else "?"
        return Response(data={"auth_url": endpoint + sep + urlencode(query, quote_via=quote)})

    async def _callback(self, req: Request, d: FieldData) -> Response | None:
        state = str(d.get("state") or "")
        self._prune_pending()
        pending = self.pending.pop(state, None) if state else None
        if pending is None:
            raise UserError(f"{LOGIN_FAILED} Expired or missing OAuth state.")
        if pending.client_nonce and pending.client_nonce != str(d.get("client_nonce") or ""):
            raise UserError(f"{LOGIN_FAILED} Client nonce mismatch.")
        cfg = await self._config()
        if cfg is None:
            raise UserError("could not load configuration")
        role = await self._role(pending.role)
        if role is None:
            raise UserError(f"{LOGIN_FAILED} role {pending.role!r} could not be found")
        id_token = str(d.get("id_token") or "")
        code = str(d.get("code") or "")
        if not id_token:
            if not code:
                raise UserError(f"{LOGIN_FAILED} No code or id_token received.")
            id_token = await self._exchange(cfg, pending, code)
        params = TokenParams.from_json(role.get("token"))
        if params.bound_cidrs and not check_cidrs(req.connection.remote_addr, params.bound_cidrs):
            raise PermissionDenied()
        all_claims = await self._verified_claims(cfg, id_token)
        if all_claims.get("nonce") != pending.nonce:
            raise PermissionDenied("error validating claims: invalid id_token nonce")
        found = await self._discovery(cfg)
        client_id = str(cfg.get("oidc_client_id") or "")
        response = self._authorize(
            pending.role, role, all_claims, issuer=found.issuer, strict_audience=False, audience=[client_id]
        )
        bound = list(role.get("bound_audiences") or [])
        if bound:
            try:
                rules.check_audience(bound, all_claims.get("aud"), strict=False)
            except rules.ClaimError as err:
                raise PermissionDenied(f"error validating claims: {err}") from None
        return response

    async def _exchange(self, cfg: dict[str, Any], pending: PendingLogin, code: str) -> str:
        """Trade the authorization code for tokens at the provider's token endpoint (PKCE, client auth)."""
        found = await self._discovery(cfg)
        if not found.token_endpoint:
            raise UserError(f"{LOGIN_FAILED} Error exchanging oidc code: provider has no token endpoint")
        client_id = str(cfg.get("oidc_client_id") or "")
        secret = str(cfg.get("oidc_client_secret") or "")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        try:
            doc = await self.remote.fetcher.request_json(
                "POST",
                found.token_endpoint,
                cfg.get("oidc_discovery_ca_pem") or "",
                form=form,
                auth=(quote(client_id, safe=""), quote(secret, safe="")),
            )
        except KeySourceError as err:
            raise UserError(f"{LOGIN_FAILED} Error exchanging oidc code: {err}") from None
        token = doc.get("id_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise UserError(f"{LOGIN_FAILED} No id_token found in response.")
        return token


async def factory(config: BackendConfig, core: Core) -> JWTBackend:
    """Build one jwt or oidc mount."""
    return JWTBackend(config, core)
