"""The GitHub auth method: a GitHub personal access token in, a token with mapped policies out.

The login asks the GitHub API (``base_url``, GitHub Enterprise or a mock in tests) who
the token belongs to, which organizations and teams that user is in, and requires the
configured organization (checked by its numeric ID, fetched once, as Vault does since
1.10). Policies are the config's ``token_policies`` plus those mapped to the user's
teams (by name and slug) and to the user (``map/teams/*``, ``map/users/*``, keys
case-insensitive, a ``default`` key applying to everyone).

The caller's GitHub token is only ever sent to ``base_url``'s own origin (paging links
pointing elsewhere are not followed), never stored, logged or echoed in an error.
Vault answers "not in the organization" with a 500 since 1.10 (hvac's suite checks
this); other refusals are 400.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from strongroom.auth.common import TokenParams, check_cidrs, token_fields
from strongroom.framework import Display, Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import CodedError, PermissionDenied, UnsupportedPath, UserError
from strongroom.logical.request import Auth, Operation, Request, Response
from strongroom.logical.storage import get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.auth.github")

DEFAULT_BASE_URL = "https://api.github.com/"
CONFIG_KEY = "config"
NOT_IN_ORG = "user is not part of required org"
MAX_PAGES = 10
_MAP_KEY = re.compile(r"^[-\w]+$")
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')

_CONFIG_FIELDS: dict[str, Field] = {
    "organization": Field(FieldType.STRING, "The organization users must be part of"),
    "organization_id": Field(FieldType.INT, "The ID of the organization users must be part of"),
    "base_url": Field(
        FieldType.STRING,
        "The API endpoint to use. Useful if you are running GitHub Enterprise or an "
        "API-compatible authentication server.",
    ),
    **token_fields("ttl", "max_ttl"),
}


class GitHubError(Exception):
    """A GitHub API call failed; the message is safe to show (no token, no response body)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _op(
    handler: Callable[[Request, FieldData], Awaitable[Response | None]], summary: str = ""
) -> PathOperation:
    return PathOperation(handler, summary=summary)


def _map_policies(raw: Any) -> list[str]:
    if not isinstance(raw, str):
        return []
    return [p.strip() for p in raw.split(",") if p.strip()]


class GitHubBackend(FrameworkBackend):
    """One ``github`` mount."""

    backend_type = "github"
    help_text = (
        "The GitHub credential provider allows authentication via GitHub. Users provide a personal "
        "access token to log in, and the credential provider verifies they're part of the correct "
        "organization and then maps the user to a set of Vault policies according to the teams "
        "they're part of."
    )
    # Tests inject an httpx.MockTransport here (None: real network).
    transport: ClassVar[httpx.AsyncBaseTransport | None] = None
    timeout: ClassVar[float] = 10.0
    # Vault >= 1.10 returns the missing membership as a plain (500) error.
    not_in_org_status: ClassVar[int] = 500

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        super().__init__(config)

    # -- paths -------------------------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        disp = Display(prefix="github")
        paths = [
            Path(
                "config",
                {
                    Operation.READ: _op(self._config_read, "Read the configuration"),
                    Operation.UPDATE: _op(self._config_write, "Configure the GitHub auth method"),
                },
                fields=_CONFIG_FIELDS,
                synopsis="Configures the GitHub organization and token settings.",
                display=disp,
            ),
            Path(
                "login",
                {Operation.UPDATE: _op(self._login, "Log in with a GitHub personal access token")},
                fields={"token": Field(FieldType.STRING, "GitHub personal API token", sensitive=True)},
                unauthenticated=True,
                synopsis="Log in with a GitHub personal access token.",
                display=disp,
            ),
        ]
        for kind in ("teams", "users"):
            paths.extend(self._map_paths(kind, disp))
        return paths

    def _map_paths(self, kind: str, disp: Display) -> list[Path]:
        """Vault's (deprecated but still used) ``framework.PathMap``: ``map/<kind>/<key>`` -> {value}."""
        folder = f"map/{kind}/"

        async def listing(req: Request, d: FieldData) -> Response | None:
            return Response(data={"keys": await self.storage.list(folder)})

        def key_of(d: FieldData) -> str:
            key = str(d.get("key"))
            if not _MAP_KEY.match(key):
                raise UnsupportedPath()
            return key

        async def exists(req: Request, d: FieldData) -> bool:
            return await self.storage.get(folder + key_of(d).lower()) is not None

        async def read(req: Request, d: FieldData) -> Response | None:
            stored = await get_json(self.storage, folder + key_of(d).lower())
            # Vault answers an unmapped key with 200 and no data
            return Response(data=dict(stored) if isinstance(stored, dict) else {})

        async def write(req: Request, d: FieldData) -> Response | None:
            key = key_of(d)
            value = "" if d.get("value") is None else str(d.get("value"))
            await put_json(self.storage, folder + key.lower(), {"key": key, "value": value})
            return None

        async def delete(req: Request, d: FieldData) -> Response | None:
            await self.storage.delete(folder + key_of(d).lower())
            return None

        fields = {
            "key": Field(FieldType.STRING, f"Key for the {kind} mapping"),
            "value": Field(FieldType.STRING, f"Value for {kind} mapping"),
        }
        return [
            Path(
                folder,
                {Operation.LIST: _op(listing, f"List the {kind} mappings")},
                synopsis=f"Read mappings for {kind}",
                display=disp,
            ),
            Path(
                folder.rstrip("/"),
                {Operation.READ: _op(listing, f"List the {kind} mappings")},
                synopsis=f"Read mappings for {kind}",
                display=disp,
            ),
            Path(
                folder + "{key:segment}",
                {
                    Operation.READ: _op(read, f"Read a {kind} mapping"),
                    Operation.CREATE: _op(write, f"Map a {kind[:-1]} to policies"),
                    Operation.UPDATE: _op(write, f"Map a {kind[:-1]} to policies"),
                    Operation.DELETE: _op(delete, f"Delete a {kind} mapping"),
                },
                fields=fields,
                existence_check=exists,
                synopsis=f"Read/write/delete a single {kind} mapping",
                display=disp,
            ),
        ]

    # -- config ------------------------------------------------------------------------------

    async def _config(self) -> dict[str, Any] | None:
        raw = await get_json(self.storage, CONFIG_KEY)
        return raw if isinstance(raw, dict) else None

    async def _config_write(self, req: Request, d: FieldData) -> Response | None:
        config = await self._config() or {}
        if d.sent("organization"):
            config["organization"] = str(d.get("organization"))
        organization = str(config.get("organization") or "")
        if not organization:
            raise UserError("organization is a required parameter")
        if d.sent("organization_id"):
            config["organization_id"] = int(d.get("organization_id"))
        if d.sent("base_url"):
            base_url = str(d.get("base_url")).strip()
            if base_url:
                if not base_url.endswith("/"):
                    base_url += "/"
                parts = urlsplit(base_url)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise UserError("error parsing given base_url: expected an http(s) URL")
            config["base_url"] = base_url
        warnings: list[str] = []
        if not config.get("organization_id"):
            try:
                config["organization_id"] = await self._organization_id(config, "")
            except GitHubError as err:
                raise UserError(f"failed to look up the organization: {err}") from None
            if not config["organization_id"]:
                warnings.append("organization_id is missing. It is recommended to set the organization_id.")
        token = TokenParams.from_fields(d, TokenParams.from_json(config.get("token")))
        config["token"] = token.to_json()
        await put_json(self.storage, CONFIG_KEY, config)
        return Response(warnings=warnings) if warnings else None

    async def _config_read(self, req: Request, d: FieldData) -> Response | None:
        config = await self._config()
        if config is None:
            return None
        token = TokenParams.from_json(config.get("token"))
        data: dict[str, Any] = {
            "organization_id": int(config.get("organization_id") or 0),
            "organization": config.get("organization", ""),
            "base_url": config.get("base_url", ""),
            **token.to_api(),
        }
        return Response(data=data)

    # -- GitHub API --------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, timeout=self.timeout, follow_redirects=False)

    @staticmethod
    def _base(config: dict[str, Any]) -> str:
        return str(config.get("base_url") or DEFAULT_BASE_URL)

    async def _get(self, client: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
        headers = {"Accept": "application/vnd.github+json", "User-Agent": "strongroom"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            resp = await client.get(url, headers=headers)
        except httpx.HTTPError as err:
            raise GitHubError(f"failed to reach the GitHub API ({type(err).__name__})") from None
        if resp.status_code != 200:
            path = urlsplit(url).path
            raise GitHubError(
                f"GitHub API request GET {path} returned HTTP {resp.status_code}", resp.status_code
            )
        return resp

    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        """Decode a body; an empty body is 'nothing', as go-github treats it."""
        if not resp.content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            raise GitHubError("GitHub API returned a body that is not JSON") from None

    async def _get_all(self, client: httpx.AsyncClient, base: str, path: str, token: str) -> list[Any]:
        """Every item of a paged list, following ``Link: rel=next`` within ``base``'s origin."""
        origin = urlsplit(base)[:2]
        url: str | None = base + path + "?per_page=100"
        items: list[Any] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            resp = await self._get(client, url, token)
            page = self._json(resp)
            if isinstance(page, list):
                items.extend(page)
            elif page is not None:
                raise GitHubError(f"GitHub API returned an unexpected document for {path}")
            url = None
            match = _NEXT_LINK.search(resp.headers.get("link", ""))
            if match:
                following = str(httpx.URL(resp.request.url).join(match.group(1)))
                if urlsplit(following)[:2] == origin:
                    url = following
                else:
                    log.warning("not following a GitHub paging link to another origin")
        return items

    async def _organization_id(self, config: dict[str, Any], token: str) -> int:
        base = self._base(config)
        async with self._client() as client:
            resp = await self._get(
                client, base + "orgs/" + quote(str(config["organization"]), safe=""), token
            )
        doc = self._json(resp)
        org_id = doc.get("id") if isinstance(doc, dict) else None
        return int(org_id) if isinstance(org_id, int) and not isinstance(org_id, bool) else 0

    # -- login -------------------------------------------------------------------------------

    async def _login(self, req: Request, d: FieldData) -> Response | None:
        token = str(d.get("token") or "").strip()
        if not token:
            raise UserError("missing token")
        config = await self._config()
        if config is None:
            raise UserError("configuration has not been set")
        params = TokenParams.from_json(config.get("token"))
        if params.bound_cidrs and not check_cidrs(req.connection.remote_addr, params.bound_cidrs):
            raise PermissionDenied()
        try:
            return await self._verify(config, params, token)
        except GitHubError as err:
            if err.status in (401, 403):
                raise UserError(f"GitHub rejected the token (HTTP {err.status})") from None
            raise UserError(str(err)) from None

    async def _verify(self, config: dict[str, Any], params: TokenParams, token: str) -> Response:
        warnings: list[str] = []
        if not config.get("organization_id"):
            # trust on first use, as Vault does for configs written before organization_id existed
            config["organization_id"] = await self._organization_id(config, token)
            if config["organization_id"]:
                await put_json(self.storage, CONFIG_KEY, config)
        org_id = int(config.get("organization_id") or 0)
        base = self._base(config)
        async with self._client() as client:
            user = self._json(await self._get(client, base + "user", token))
            login = user.get("login") if isinstance(user, dict) else None
            if not isinstance(login, str) or not login:
                raise GitHubError("GitHub API returned no user login")
            orgs = await self._get_all(client, base, "user/orgs", token)
            org = next((o for o in orgs if isinstance(o, dict) and org_id and o.get("id") == org_id), None)
            if org is None:
                raise CodedError(self.not_in_org_status, NOT_IN_ORG)
            org_login = str(org.get("login") or "")
            if org_login != config.get("organization"):
                warnings.append(
                    f'the organization name has changed to "{org_login}". It is recommended to verify and '
                    f"update the organization name in the config: organization_id={org_id}"
                )
            teams = await self._get_all(client, base, "user/teams", token)
        team_names: list[str] = []
        for team in teams:
            if not isinstance(team, dict) or (team.get("organization") or {}).get("id") != org.get("id"):
                continue
            name, slug = str(team.get("name") or ""), str(team.get("slug") or "")
            team_names.append(name)
            if slug and slug != name:
                team_names.append(slug)
        policies = await self._mapped("teams", team_names) + await self._mapped("users", [login])
        auth = Auth(
            metadata={"username": login, "org": org_login},
            display_name=login,
            alias_name=login,
            group_alias_names=[t for t in team_names if t],
        )
        params.apply(auth)
        for policy in policies:
            if policy not in auth.policies:
                auth.policies.append(policy)
        return Response(auth=auth, warnings=warnings)

    async def _mapped(self, kind: str, names: list[str]) -> list[str]:
        """Vault's ``PolicyMap.Policies``: the ``default`` key plus each name, case-insensitive, sorted."""
        found: set[str] = set()
        for name in ["default", *names]:
            if not name or not _MAP_KEY.match(name):
                continue
            stored = await get_json(self.storage, f"map/{kind}/{name.lower()}")
            if isinstance(stored, dict):
                found.update(_map_policies(stored.get("value")))
        return sorted(found)


async def factory(config: BackendConfig, core: Core) -> GitHubBackend:
    """Build one github mount."""
    return GitHubBackend(config, core)
