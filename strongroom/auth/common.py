"""What every auth method shares: the token settings of a role, source-address checks, lockout.

Vault gives each role of each auth method (approle roles, userpass users, the github
config, jwt roles...) the same ``token_*`` fields (``sdk/helper/tokenutil``). They live
here once: :data:`TOKEN_FIELDS` declares them, :class:`TokenParams` parses a partial
update, stores itself as JSON, shows itself the way Vault reads it back (durations as
integer seconds) and fills the :class:`~strongroom.logical.request.Auth` a login returns.

Legacy names (``policies``, ``period``, ``bound_cidrs``, ``ttl``, ``max_ttl``) are
honoured when a path declares them, with tokenutil's ``UpgradeValue`` rules: the old
value is remembered only while clients keep sending the old name, so a read shows it
back exactly when Vault would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.cidrs import check_cidrs as check_cidrs  # re-exported for the auth methods
from strongroom.cidrs import networks, render_cidr
from strongroom.durations import parse_duration
from strongroom.framework.fields import Field, FieldData, FieldType
from strongroom.logical.errors import UserError
from strongroom.logical.request import Auth
from strongroom.logical.storage import Storage, get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.auth")

__all__ = [
    "LEGACY_TOKEN_FIELDS",
    "TOKEN_FIELDS",
    "TOKEN_TYPES",
    "LockoutPolicy",
    "LoginLockout",
    "StoredLoginLockout",
    "TokenParams",
    "check_cidrs",
    "cidrs_subset",
    "mount_lockout_policy",
    "parse_cidrs",
    "parse_policies",
    "token_fields",
    "validate_cidr_blocks",
]

# What a role may ask for; "default" (the zero value) lets the mount decide.
TOKEN_TYPES = ("default", "service", "batch", "default-service", "default-batch")

TOKEN_FIELDS: dict[str, Field] = {
    "token_ttl": Field(FieldType.DURATION, "The initial ttl of the token to generate"),
    "token_max_ttl": Field(FieldType.DURATION, "The maximum lifetime of the generated token"),
    "token_policies": Field(FieldType.COMMA_LIST, "Comma-separated list of policies"),
    "token_bound_cidrs": Field(
        FieldType.COMMA_LIST,
        "Comma separated string or JSON list of CIDR blocks. If set, specifies the blocks of "
        "IP addresses which are allowed to use the generated token.",
    ),
    "token_explicit_max_ttl": Field(
        FieldType.DURATION,
        "If set, tokens created via this role carry an explicit maximum TTL. During renewal, the "
        "current maximum TTL values of the role and the mount are not checked for changes.",
    ),
    "token_no_default_policy": Field(
        FieldType.BOOL, "If true, the 'default' policy will not automatically be added to generated tokens"
    ),
    "token_num_uses": Field(
        FieldType.INT, "The maximum number of times a token may be used, a value of zero means unlimited"
    ),
    "token_period": Field(
        FieldType.DURATION,
        "If set, tokens created via this role will have no max lifetime; instead, their renewal "
        "period will be fixed to this value.",
    ),
    "token_type": Field(
        FieldType.STRING, "The type of token to generate, service or batch", default="default-service"
    ),
}


def _deprecated(new: str) -> str:
    return f'Use "{new}" instead. If this and "{new}" are both specified, only "{new}" will be used.'


# legacy name -> the token_* field it stands for
_ALIASES: dict[str, str] = {
    "policies": "token_policies",
    "period": "token_period",
    "bound_cidrs": "token_bound_cidrs",
    "ttl": "token_ttl",
    "max_ttl": "token_max_ttl",
}

LEGACY_TOKEN_FIELDS: dict[str, Field] = {
    old: Field(TOKEN_FIELDS[new].type, _deprecated(new), deprecated=True) for old, new in _ALIASES.items()
}


def token_fields(*legacy: str) -> dict[str, Field]:
    """The token_* fields plus the legacy aliases this method still accepts (Vault differs per method)."""
    out = dict(TOKEN_FIELDS)
    for name in legacy:
        out[name] = LEGACY_TOKEN_FIELDS[name]
    return out


# -- small parsers shared by auth methods ----------------------------------------------------


def parse_policies(values: Iterable[str]) -> list[str]:
    """Vault's ``policyutil.ParsePolicies`` (without the default): trimmed, lower-cased, deduplicated."""
    out: list[str] = []
    for value in values:
        name = value.strip().lower()
        if name and name not in out:
            out.append(name)
    return out


def parse_cidrs(values: Iterable[str], field_name: str) -> list[str]:
    """Addresses or CIDR blocks (``parseutil.ParseAddrs``), rendered the way go-sockaddr prints them."""
    out: list[str] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            out.append(render_cidr(text))
        except ValueError:
            raise UserError(
                f"invalid {field_name}: {text[:64]!r} is not an IP address or CIDR block"
            ) from None
    return out


def validate_cidr_blocks(values: Iterable[str]) -> bool:
    """Vault's ``cidrutil.ValidateCIDRListSlice``, lenient about a bare address (a /32 or /128)."""
    for value in values:
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            return False
    return True


def cidrs_subset(inner: Iterable[str], outer: Iterable[str]) -> bool:
    """Vault's ``cidrutil.SubsetBlocks``: every inner block lies inside some outer block (none outer: yes)."""
    outer_nets = networks(outer)
    if not outer_nets:
        return True
    for block in inner:
        try:
            net = ipaddress.ip_network(block.strip(), strict=False)
        except ValueError:
            return False
        if not any(net.version == o.version and net.subnet_of(o) for o in outer_nets):  # type: ignore[arg-type]
            return False
    return True


# -- token parameters ----------------------------------------------------------------------


@dataclass
class TokenParams:
    """The token settings of one role (or config); durations in whole seconds."""

    ttl: int = 0
    max_ttl: int = 0
    policies: list[str] = field(default_factory=list)
    bound_cidrs: list[str] = field(default_factory=list)
    explicit_max_ttl: int = 0
    no_default_policy: bool = False
    num_uses: int = 0
    period: int = 0
    token_type: str = "default"  # noqa: S105
    # values last written under a legacy name (shown back under that name, as Vault does)
    legacy: dict[str, Any] = field(default_factory=dict)

    # -- parsing -------------------------------------------------------------------------------

    @classmethod
    def from_fields(cls, d: FieldData, existing: TokenParams | None = None) -> TokenParams:
        """Apply the sent token fields (and declared legacy aliases) over ``existing``.

        Only fields the client sent change; raises :class:`UserError` with Vault's texts.
        """
        p = existing.copy() if existing is not None else cls()
        if d.sent("token_bound_cidrs"):
            p.bound_cidrs = parse_cidrs(d.get("token_bound_cidrs"), "token_bound_cidrs")
        if d.sent("token_explicit_max_ttl"):
            p.explicit_max_ttl = int(d.get("token_explicit_max_ttl"))
        if d.sent("token_max_ttl"):
            p.max_ttl = int(d.get("token_max_ttl"))
        if d.sent("token_no_default_policy"):
            p.no_default_policy = bool(d.get("token_no_default_policy"))
        if d.sent("token_period"):
            p.period = int(d.get("token_period"))
        if d.sent("token_policies"):
            p.policies = parse_policies(d.get("token_policies"))
        if d.sent("token_type"):
            text = str(d.get("token_type")).strip()
            if text not in ("", *TOKEN_TYPES):
                raise UserError(f"invalid 'token_type' value {text!r}")
            p.token_type = text or "default"
        if d.sent("token_num_uses"):
            p.num_uses = int(d.get("token_num_uses"))
        if p.num_uses < 0:
            raise UserError("'token_num_uses' cannot be negative")
        if p.token_type in ("batch", "default-batch"):
            if p.period:
                raise UserError(
                    "'token_type' cannot be 'batch' or 'default_batch' when set to generate periodic tokens"
                )
            if p.num_uses:
                raise UserError(
                    "'token_type' cannot be 'batch' or 'default_batch' when set to generate tokens "
                    "with limited use count"
                )
        if d.sent("token_ttl"):
            p.ttl = int(d.get("token_ttl"))
        p._upgrade_legacy(d)
        if p.ttl > 0 and p.max_ttl > 0 and p.ttl > p.max_ttl:
            raise UserError("'token_ttl' cannot be greater than 'token_max_ttl'")
        return p

    def _upgrade_legacy(self, d: FieldData) -> None:
        """tokenutil.UpgradeValue for every legacy alias the path declares."""
        for old, new in _ALIASES.items():
            if old not in d.fields:
                continue
            attr = new.removeprefix("token_")
            if not d.sent(new):
                if d.sent(old):
                    value = d.get(old)
                    if new == "token_policies":
                        value = parse_policies(value)
                    elif new == "token_bound_cidrs":
                        value = parse_cidrs(value, old)
                    else:
                        value = int(value)
                    setattr(self, attr, value)
                    self.legacy[old] = value
            elif d.sent(old):
                self.legacy[old] = getattr(self, attr)
            else:
                self.legacy.pop(old, None)

    def copy(self) -> TokenParams:
        return TokenParams.from_json(self.to_json())

    # -- views ---------------------------------------------------------------------------------

    def to_api(self, *, legacy: bool = True) -> dict[str, Any]:
        """The fields as Vault's ``PopulateTokenData`` reads them back (plus set legacy names)."""
        out: dict[str, Any] = {
            "token_bound_cidrs": list(self.bound_cidrs),
            "token_explicit_max_ttl": self.explicit_max_ttl,
            "token_max_ttl": self.max_ttl,
            "token_no_default_policy": self.no_default_policy,
            "token_period": self.period,
            "token_policies": list(self.policies),
            "token_type": self.token_type,
            "token_ttl": self.ttl,
            "token_num_uses": self.num_uses,
        }
        if legacy:
            for name, value in self.legacy.items():
                if value:
                    out[name] = list(value) if isinstance(value, list) else value
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "token_ttl": self.ttl,
            "token_max_ttl": self.max_ttl,
            "token_policies": list(self.policies),
            "token_bound_cidrs": list(self.bound_cidrs),
            "token_explicit_max_ttl": self.explicit_max_ttl,
            "token_no_default_policy": self.no_default_policy,
            "token_num_uses": self.num_uses,
            "token_period": self.period,
            "token_type": self.token_type,
            "legacy": {k: (list(v) if isinstance(v, list) else v) for k, v in self.legacy.items()},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> TokenParams:
        raw = raw or {}
        return cls(
            ttl=int(raw.get("token_ttl", 0) or 0),
            max_ttl=int(raw.get("token_max_ttl", 0) or 0),
            policies=list(raw.get("token_policies") or []),
            bound_cidrs=list(raw.get("token_bound_cidrs") or []),
            explicit_max_ttl=int(raw.get("token_explicit_max_ttl", 0) or 0),
            no_default_policy=bool(raw.get("token_no_default_policy", False)),
            num_uses=int(raw.get("token_num_uses", 0) or 0),
            period=int(raw.get("token_period", 0) or 0),
            token_type=str(raw.get("token_type") or "default"),
            legacy=dict(raw.get("legacy") or {}),
        )

    def apply(self, auth: Auth) -> Auth:
        """Fill a login's Auth from these settings (``PopulateTokenAuth``); core mints the token."""
        auth.policies = list(self.policies)
        auth.ttl = self.ttl
        auth.max_ttl = self.max_ttl
        auth.explicit_max_ttl = self.explicit_max_ttl
        auth.period = self.period
        auth.num_uses = self.num_uses
        auth.bound_cidrs = list(self.bound_cidrs)
        auth.no_default_policy = self.no_default_policy
        auth.token_type = self.token_type
        auth.renewable = True
        return auth

    def apply_renewal(self, auth: Auth) -> Auth:
        """What a renewal answers (Vault's ``pathLoginRenew``): the token renews with today's TTLs."""
        auth.ttl, auth.max_ttl, auth.period = self.ttl, self.max_ttl, self.period
        return auth


def equivalent_policies(a: Iterable[str], b: Iterable[str]) -> bool:
    """``policyutil.EquivalentPolicies``: the same set, ignoring order, case, duplicates and ``default``."""
    return set(parse_policies(list(a))) - {"default"} == set(parse_policies(list(b))) - {"default"}


# -- user lockout --------------------------------------------------------------------------


@dataclass(frozen=True)
class LockoutPolicy:
    """Vault's user lockout defaults: 5 failures, locked 15 min, counter reset after 15 min."""

    threshold: int = 5
    duration: int = 900
    counter_reset: int = 900
    disabled: bool = False

    @classmethod
    def from_mount_config(cls, raw: Mapping[str, Any] | None) -> LockoutPolicy:
        """Read ``user_lockout_config`` from a mount tune; bad, zero or missing values keep the defaults.

        ``sys/auth/<path>/tune`` stores the keys as ``user_lockout_threshold``,
        ``user_lockout_duration``, ``user_lockout_counter_reset_duration`` (seconds) and
        ``user_lockout_disable``, the names a tune read shows; the request names
        (``lockout_threshold``, ``lockout_duration``, ``lockout_counter_reset[_duration]``,
        ``lockout_disable``) are read too. A stored name wins over a request name.
        """
        base = cls()
        if not raw:
            return base

        def pick(*keys: str) -> Any:
            for key in keys:
                value = raw.get(key)
                if value not in ("", None, 0):
                    return value
            return None

        def duration(default: int, *keys: str) -> int:
            value = pick(*keys)
            if value is None:
                return default
            try:
                seconds = parse_duration(value)
            except (ValueError, TypeError):
                return default
            return seconds or default

        try:
            threshold = int(pick("user_lockout_threshold", "lockout_threshold") or base.threshold)
        except (ValueError, TypeError):
            threshold = base.threshold
        disable = raw.get("user_lockout_disable", raw.get("lockout_disable", ""))
        disabled = str(disable).lower() in ("1", "t", "true")
        return cls(
            threshold=max(threshold, 1),
            duration=duration(base.duration, "user_lockout_duration", "lockout_duration"),
            counter_reset=duration(
                base.counter_reset,
                "user_lockout_counter_reset_duration",
                "lockout_counter_reset_duration",
                "lockout_counter_reset",
            ),
            disabled=disabled,
        )


def mount_lockout_policy(core: Core | None, mount_accessor: str) -> LockoutPolicy:
    """The lockout policy an auth mount is tuned to now (the defaults when it is not found)."""
    entry = None
    if core is not None and mount_accessor:
        entry = core.auth_mounts.find_by_accessor(mount_accessor)
    return LockoutPolicy.from_mount_config(entry.config.user_lockout_config if entry else None)


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0
    inflight: int = 0  # attempts being checked now (StoredLoginLockout)
    inflight_at: float = 0.0


def _fresh(entry: _Failures | None, now: float, policy: LockoutPolicy) -> _Failures:
    """The entry, or a new one when its failures are too old to count and it is not locked."""
    if entry is None:
        return _Failures()
    if now - entry.last > policy.counter_reset and entry.locked_until <= now:
        return _Failures(inflight=entry.inflight, inflight_at=entry.inflight_at)
    return entry


def _count_failure(entry: _Failures | None, now: float, policy: LockoutPolicy) -> _Failures:
    """One more failed login for an alias: the counting rule both lockouts share.

    A counter idle for longer than ``counter_reset`` (and not locked) starts over;
    reaching the threshold locks the alias for ``duration`` and zeroes the count.
    """
    entry = _fresh(entry, now, policy)
    entry.count += 1
    entry.last = now
    if entry.count >= policy.threshold:
        entry.locked_until = now + policy.duration
        entry.count = 0
    return entry


class LoginLockout:
    """Per-alias failed-login counters for one mount (in memory, per node, as in Vault).

    Keys are hashed before they are kept, so no credential-like value (an approle
    role_id, say) sits in memory in clear. Only bad credentials for a known alias count.
    """

    max_entries = 50_000

    def __init__(
        self, policy: Callable[[], LockoutPolicy] = LockoutPolicy, now: Callable[[], float] = time.time
    ) -> None:
        self._policy = policy
        self._now = now
        self._entries: dict[str, _Failures] = {}
        self._key = secrets.token_bytes(32)

    def _hash(self, alias: str) -> str:
        return hmac.new(self._key, alias.encode(), hashlib.sha256).hexdigest()

    def is_locked(self, alias: str) -> bool:
        policy = self._policy()
        if policy.disabled:
            return False
        entry = self._entries.get(self._hash(alias))
        return entry is not None and entry.locked_until > self._now()

    def failure(self, alias: str) -> None:
        policy = self._policy()
        if policy.disabled:
            return
        now = self._now()
        key = self._hash(alias)
        self._entries[key] = _count_failure(self._entries.get(key), now, policy)
        if len(self._entries) > self.max_entries:
            self._prune(now, policy)

    def success(self, alias: str) -> None:
        self._entries.pop(self._hash(alias), None)

    def unlock(self, alias: str) -> None:
        """Forget an alias's failures and lock (``sys/locked-users/.../unlock``); this process only."""
        self.success(alias)

    def _prune(self, now: float, policy: LockoutPolicy) -> None:
        stale = [
            k
            for k, e in self._entries.items()
            if e.locked_until <= now and now - e.last > policy.counter_reset
        ]
        for k in stale:
            del self._entries[k]


class StoredLoginLockout:
    """Per-alias failed-login counters kept in a mount's storage, shared by every process of a node.

    :class:`LoginLockout` keeps its counters in one process's memory; a node that runs
    several HTTP workers would then allow ``threshold`` guesses *per worker*, and lose
    every lock on a restart. This variant stores each counter under the mount
    (``lockout/<hmac of alias>``, value encrypted by the barrier like all mount data),
    with the same :class:`LockoutPolicy` and the same counting rule.

    Each attempt takes a slot *before* the credential is checked (:meth:`attempt`, in a
    storage transaction): recorded failures plus attempts in flight never exceed
    ``threshold``, so a burst of parallel guesses cannot all pass the "is it locked?"
    check before the first failure is written — at most ``threshold`` guesses per window
    are ever evaluated, across all workers. An attempt over the limit waits (briefly) for
    a slot instead of failing: when the attempts in flight turn out right
    (:meth:`success` clears the counter) it goes ahead, so many clients logging in with
    the same good credentials at once are never refused; when they turn out wrong
    (:meth:`failure`) the alias locks and the waiting attempts are refused. A slot whose
    request died is given back after ``slot_timeout``.

    Storage keys are an HMAC of the alias under a random per-mount salt, so what a
    client typed as a name (sometimes a password, by mistake) never shows in key names.
    The alias itself is kept in the (encrypted) value only when the caller passes a
    ``label`` — a real user's name, which ``sys/locked-users`` may list.
    """

    prefix = "lockout/"
    salt_key = "lockout-salt"
    prune_interval = 600.0  # seconds between sweeps of idle counters (per process)
    slot_timeout = 60.0  # an attempt in flight longer than this was abandoned (seconds)
    wait_limit = 10.0  # how long an attempt waits for a slot before it is refused (seconds)
    wait_step = 0.02

    def __init__(
        self,
        storage: Storage,
        policy: Callable[[], LockoutPolicy] = LockoutPolicy,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._policy = policy
        self._now = now
        self._salt: bytes | None = None
        self._last_prune = now()
        self._prune_task: asyncio.Task[int] | None = None

    async def initialize(self) -> None:
        """Create (or load) the mount's salt; safe when several workers start at once."""
        await self._key_salt()

    async def _key_salt(self) -> bytes:
        if self._salt is None:
            async with self._storage.transaction() as txn:
                raw = await get_json(txn, self.salt_key)
                if not isinstance(raw, dict) or not raw.get("salt"):
                    raw = {"salt": base64.b64encode(secrets.token_bytes(32)).decode()}
                    await put_json(txn, self.salt_key, raw)
            self._salt = base64.b64decode(raw["salt"])
        return self._salt

    async def _key(self, alias: str) -> str:
        digest = hmac.new(await self._key_salt(), alias.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return self.prefix + digest.hexdigest()

    @staticmethod
    def _load(raw: Any) -> tuple[_Failures | None, str]:
        if not isinstance(raw, dict):
            return None, ""
        entry = _Failures(
            count=int(raw.get("count", 0) or 0),
            last=float(raw.get("last", 0.0) or 0.0),
            locked_until=float(raw.get("locked_until", 0.0) or 0.0),
            inflight=int(raw.get("inflight", 0) or 0),
            inflight_at=float(raw.get("inflight_at", 0.0) or 0.0),
        )
        return entry, str(raw.get("alias", "") or "")

    @staticmethod
    def _dump(entry: _Failures, label: str) -> dict[str, Any]:
        value: dict[str, Any] = {
            "count": entry.count,
            "last": entry.last,
            "locked_until": entry.locked_until,
            "inflight": entry.inflight,
            "inflight_at": entry.inflight_at,
        }
        if label:
            value["alias"] = label
        return value

    async def attempt(self, alias: str, label: str = "") -> bool:
        """Take a slot for one login attempt of ``alias``; False when it is (or becomes) locked.

        The caller must then report :meth:`success` or :meth:`failure`. ``label`` is the
        name ``sys/locked-users`` shows for this alias ("" keeps it unlisted). With the
        lockout disabled nothing is read or written.
        """
        policy = self._policy()
        if policy.disabled:
            return True
        key = await self._key(alias)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.wait_limit
        while True:
            async with self._storage.transaction() as txn:
                entry, stored_label = self._load(await get_json(txn, key))
                now = self._now()
                entry = _fresh(entry, now, policy)
                if entry.locked_until > now:
                    return False
                if entry.inflight and now - entry.inflight_at > self.slot_timeout:
                    entry.inflight = 0  # those requests died without an answer
                if entry.count + entry.inflight < policy.threshold:
                    entry.inflight += 1
                    entry.inflight_at = now
                    await put_json(txn, key, self._dump(entry, label or stored_label))
                    break
            if loop.time() >= give_up:
                return False
            await asyncio.sleep(self.wait_step)
        self._maybe_prune(now)
        return True

    async def failure(self, alias: str, label: str = "") -> None:
        """The attempt was wrong: its slot becomes a failure (reaching the threshold locks)."""
        policy = self._policy()
        if policy.disabled:
            return
        key = await self._key(alias)
        async with self._storage.transaction() as txn:
            entry, stored_label = self._load(await get_json(txn, key))
            now = self._now()
            inflight = max(0, (entry.inflight if entry is not None else 0) - 1)
            entry = _count_failure(entry, now, policy)
            entry.inflight = inflight
            await put_json(txn, key, self._dump(entry, label or stored_label))

    async def is_locked(self, alias: str) -> bool:
        """Whether ``alias`` is locked now (read only; :meth:`attempt` does this check itself)."""
        if self._policy().disabled:
            return False
        entry, _ = self._load(await get_json(self._storage, await self._key(alias)))
        return entry is not None and entry.locked_until > self._now()

    async def success(self, alias: str) -> None:
        """A login succeeded: the alias starts again from zero failures (and frees every slot)."""
        key = await self._key(alias)
        if await self._storage.get(key) is not None:
            await self._storage.delete(key)

    async def unlock(self, alias: str) -> None:
        """Lift a lock and forget the failures (``sys/locked-users/.../unlock``); idempotent."""
        await self._storage.delete(await self._key(alias))

    async def locked(self) -> list[str]:
        """The labels of the aliases locked now, sorted (unlabelled ones are counted, never listed)."""
        now = self._now()
        names: set[str] = set()
        for name in await self._storage.list(self.prefix):
            entry, label = self._load(await get_json(self._storage, self.prefix + name))
            if entry is not None and label and entry.locked_until > now:
                names.add(label)
        return sorted(names)

    async def prune(self) -> int:
        """Delete counters that are neither locked nor recent enough to count; return how many.

        Each entry is re-read inside a transaction before it goes, so a counter that an
        attempt just touched survives.
        """
        policy = self._policy()
        removed = 0
        for name in await self._storage.list(self.prefix):
            key = self.prefix + name
            async with self._storage.transaction() as txn:
                entry, _ = self._load(await get_json(txn, key))
                now = self._now()
                if entry is None or entry.locked_until > now or now - entry.last <= policy.counter_reset:
                    continue
                if entry.inflight and now - entry.inflight_at <= self.slot_timeout:
                    continue  # an attempt is being checked right now
                await txn.delete(key)
                removed += 1
        return removed

    def _maybe_prune(self, now: float) -> None:
        """Sweep idle counters in the background, at most once per ``prune_interval`` per process.

        Counters of names that do not exist are written too (so an unknown and a known
        name behave alike), so they must not pile up; the sweep bounds them to what
        fits in one counter-reset window, which bcrypt's cost already limits.
        """
        if now - self._last_prune < self.prune_interval:
            return
        if self._prune_task is not None and not self._prune_task.done():
            return
        self._last_prune = now
        self._prune_task = asyncio.create_task(self._prune_logged(), name="lockout-prune")

    async def _prune_logged(self) -> int:
        try:
            return await self.prune()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pruning login lockout counters failed")
            return 0

    async def close(self) -> None:
        """Stop a running sweep (the mount is going away or the node is sealing)."""
        task, self._prune_task = self._prune_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
