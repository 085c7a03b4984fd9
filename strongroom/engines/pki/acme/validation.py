"""ACME challenge validation: http-01 (RFC 8555 §8.3), dns-01 (§8.4), tls-alpn-01 (RFC 8737).

A validator connects wherever the requester's DNS points it, so without a policy any ACME
client could make this server probe its own network (CVE-2026-5052, SSRF through ACME
validation). Every address -- first hop and each redirect target -- is checked with
:func:`address_allowed` before connecting, and connections always go to the checked IP
literal (the HTTP client never resolves a name itself, so DNS rebinding between check and
connect is impossible). Loopback, private, link-local, CGNAT, multicast, reserved and
documentation addresses, and IPv6 forms embedding them, are refused unless the operator
permits a range explicitly (a test responder, a private network).

Every failure is raised as :class:`AcmeProblem` carrying the validated identifier; nothing
else escapes the public coroutines. Key authorizations are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import httpx
from cryptography import x509

from strongroom.engines.pki.acme.problems import AcmeProblem

log = logging.getLogger("strongroom.engines.pki.acme.validation")

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
_T = TypeVar("_T")

ACME_TLS_ALPN = "acme-tls/1"
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # id-pe-acmeIdentifier, RFC 8737
MAX_BODY = 8192  # a key authorization is under 200 bytes; anything near this is not one
MAX_REDIRECTS = 10
# the whole validation may take this many attempts' worth of settings.timeout (IPv6 then IPv4
# fallback, redirects, DNS lookups), so a slow target cannot hold a worker indefinitely
DEADLINE_ATTEMPTS = 3
_QUOTE_CHARS = 64
_USER_AGENT = "strongroom-acme-validator"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

# Blocks that are never a public validation target. Python's own tables (is_global and
# friends) changed between patch releases; this list keeps the policy the same everywhere.
_NEVER_GLOBAL: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8",  # this network
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/8",  # unspecified, loopback, IPv4-compatible, local-use NAT64 (64:ff9b:1::/48)
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",
        "2002::/16",  # 6to4 (deprecated; embeds arbitrary IPv4)
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: last 32 bits are IPv4


# ---------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class ValidationSettings:
    """Where and how validators connect; the defaults are RFC behaviour with the strict policy."""

    http_port: int = 80  # where http-01 connects (RFC 8555 fixes 80; tests point it elsewhere)
    tls_port: int = 443  # where tls-alpn-01 connects (RFC 8737 fixes 443)
    dns_resolver: str = ""  # "ip:port", "[v6]:port" or a bare IP (port 53); "" = system resolver
    permitted_ranges: tuple[IPNetwork, ...] = ()  # allowed even if private/loopback
    excluded_ranges: tuple[IPNetwork, ...] = ()  # refused even if public; wins over permitted
    timeout: float = 10.0  # seconds per attempt (one DNS lookup, or one connect + request + read)

    def __post_init__(self) -> None:
        _check_port("challenge_http_port", self.http_port)
        _check_port("challenge_tls_port", self.tls_port)
        parse_resolver(self.dns_resolver)
        if (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not self.timeout > 0
        ):
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        for label, ranges in (
            ("challenge_permitted_ip_ranges", self.permitted_ranges),
            ("challenge_excluded_ip_ranges", self.excluded_ranges),
        ):
            if not isinstance(ranges, tuple) or not all(
                isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network) for net in ranges
            ):
                raise ValueError(f"{label} must be a tuple of ipaddress networks")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ValidationSettings:
        """Settings from the ACME config; absent, null or empty values keep the defaults.

        Keys: ``dns_resolver``, ``challenge_http_port``, ``challenge_tls_port``,
        ``challenge_permitted_ip_ranges`` and ``challenge_excluded_ip_ranges`` (lists, or
        comma-separated strings, of CIDR blocks or bare addresses). ValueError names the key.
        """
        kwargs: dict[str, Any] = {}
        resolver = cfg.get("dns_resolver")
        if resolver is not None:
            if not isinstance(resolver, str):
                raise ValueError(f"dns_resolver must be a string like 127.0.0.1:53, not {resolver!r}")
            kwargs["dns_resolver"] = resolver.strip()
        for key, attr in (("challenge_http_port", "http_port"), ("challenge_tls_port", "tls_port")):
            value = cfg.get(key)
            if value is not None and value != "":
                kwargs[attr] = _parse_port(key, value)
        for key, attr in (
            ("challenge_permitted_ip_ranges", "permitted_ranges"),
            ("challenge_excluded_ip_ranges", "excluded_ranges"),
        ):
            value = cfg.get(key)
            if value is not None:
                kwargs[attr] = _parse_ranges(key, value)
        return cls(**kwargs)


def _check_port(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{key} must be a port number between 1 and 65535, not {value!r}")


def _parse_port(key: str, value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    _check_port(key, value)
    assert isinstance(value, int)
    return value


def _parse_ranges(key: str, value: object) -> tuple[IPNetwork, ...]:
    if isinstance(value, str):
        items: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"{key} must be a list of CIDR blocks or addresses, not {value!r}")
    out: list[IPNetwork] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{key}: {item!r} is not a CIDR block or address")
        text = item.strip()
        try:
            out.append(ipaddress.ip_network(text))
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"{key}: {text!r} is not a CIDR block or address") from None
            raise ValueError(f"{key}: {text!r} has host bits set (did you mean {loose}?)") from None
    return tuple(out)


def parse_resolver(text: str) -> tuple[str, int] | None:
    """``(ip, port)`` for a ``dns_resolver`` setting, None for the system resolver; ValueError if bad.

    The host must be an IP address: the resolver is what names are looked up with.
    """
    if not isinstance(text, str):
        raise ValueError(f"dns_resolver must be a string like 127.0.0.1:53, not {text!r}")
    text = text.strip()
    if not text:
        return None
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"dns_resolver {text!r} is not ip:port, [ipv6]:port or a bare IP address")
        port_text = rest[1:] if rest else ""
        if rest and not port_text:
            raise ValueError(f"dns_resolver {text!r} has an empty port")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text  # a bare IPv4 or IPv6 address
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"dns_resolver {text!r}: the host must be an IP address, e.g. 127.0.0.1:8053 or [::1]:53"
        ) from None
    port = 53
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"dns_resolver {text!r}: the port must be between 1 and 65535")
        port = int(port_text)
    return str(addr), port


# ---------------------------------------------------------------------------------------------
# address policy


def _policy_form(ip: IPAddress) -> IPAddress:
    """The address traffic really goes to: IPv4-mapped and NAT64 addresses stand for their IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _all_forms(ip: IPAddress) -> list[IPAddress]:
    """The address and every IPv4 address embedded in it, for exclusions (which must not be dodged)."""
    forms: list[IPAddress] = [ip, _policy_form(ip)]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.sixtofour is not None:
            forms.append(ip.sixtofour)
        if ip.teredo is not None:
            forms.extend(ip.teredo)
    return forms


def _is_public(ip: IPAddress) -> bool:
    if (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    return not any(ip in net for net in _NEVER_GLOBAL)


def address_allowed(ip: IPAddress, settings: ValidationSettings) -> bool:
    """Whether a validator may connect to ``ip``: excluded never, permitted always, else public only."""
    if any(form in net for form in _all_forms(ip) for net in settings.excluded_ranges):
        return False
    # a permission covers the address itself or the IPv4 it maps to, never one behind a NAT64
    # gateway or a 6to4 relay: permitting 127.0.0.0/8 must not open 64:ff9b::7f00:1
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    if any(addr in net for addr in (ip, mapped) if addr is not None for net in settings.permitted_ranges):
        return True
    return _is_public(_policy_form(ip))


def _refusal(ip: IPAddress) -> str:
    return (
        f"refusing to connect to {ip}: loopback/private addresses are not allowed "
        "(see challenge_permitted_ip_ranges and challenge_excluded_ip_ranges)"
    )


def _connect_order(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    """The first IPv6 then the first IPv4 address, as Boulder does: fallback without fan-out."""
    v6 = next((a for a in addresses if a.version == 6), None)
    v4 = next((a for a in addresses if a.version == 4), None)
    return [a for a in (v6, v4) if a is not None]


# ---------------------------------------------------------------------------------------------
# identifiers and DNS


def _dns_name(value: str) -> str:
    """A lower-case LDH name without trailing dot; AcmeProblem("malformed") if it is not one."""
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or len(labels) < 2
        or not all(_LABEL_RE.fullmatch(lb) for lb in labels)
        or labels[-1].isdigit()  # 127.1, 2130706433.0: numeric forms some stacks read as addresses
    ):
        raise AcmeProblem("malformed", f"{_quote(value.encode())} is not a valid DNS name")
    return name


def _identifier(identifier: Mapping[str, str], challenge: str, *, ip_ok: bool) -> tuple[str, str]:
    """``(type, canonical value)`` of an ACME identifier this challenge type can validate."""
    if not isinstance(identifier, Mapping):
        raise AcmeProblem("malformed", "the identifier must be an object with type and value")
    kind, value = identifier.get("type"), identifier.get("value")
    if not isinstance(kind, str) or not isinstance(value, str):
        raise AcmeProblem("malformed", "the identifier must have string type and value")
    if kind == "ip":
        if not ip_ok:
            raise AcmeProblem("malformed", f"{challenge} cannot validate IP address identifiers")
        try:
            if "%" in value:
                raise ValueError
            return kind, str(ipaddress.ip_address(value))
        except ValueError:
            raise AcmeProblem("malformed", f"{_quote(value.encode())} is not an IP address") from None
    if kind != "dns":
        raise AcmeProblem(
            "unsupportedIdentifier", f"identifier type {_quote(kind.encode())} is not supported"
        )
    if value.startswith("*."):
        raise AcmeProblem("malformed", f"{challenge} cannot validate wildcard names")
    return kind, _dns_name(value)


def _resolver(settings: ValidationSettings) -> dns.asyncresolver.Resolver:
    target = parse_resolver(settings.dns_resolver)
    try:
        resolver = dns.asyncresolver.Resolver(configure=target is None)
    except dns.resolver.NoResolverConfiguration:
        raise AcmeProblem("dns", "this server has no DNS resolver configured (set dns_resolver)") from None
    if target is not None:
        resolver.nameservers = [target[0]]
        resolver.port = target[1]
    resolver.timeout = settings.timeout
    resolver.lifetime = settings.timeout
    return resolver


def _dns_problem(exc: BaseException, rdtype: str, name: str) -> AcmeProblem:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return AcmeProblem("dns", f"NXDOMAIN looking up {rdtype} for {name}")
    if isinstance(exc, dns.exception.Timeout):
        return AcmeProblem("dns", f"DNS query timed out looking up {rdtype} for {name}")
    if isinstance(exc, dns.resolver.NoNameservers):
        return AcmeProblem(
            "dns", f"the DNS server failed (SERVFAIL or REFUSED) looking up {rdtype} for {name}"
        )
    return AcmeProblem("dns", f"DNS problem looking up {rdtype} for {name}")


async def _lookup(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> dns.resolver.Answer:
    """One absolute lookup (no search domains); AcmeProblem for every failure but NXDOMAIN."""
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException:
        raise AcmeProblem("malformed", f"{_quote(name.encode())} is not a valid DNS name") from None
    try:
        return await resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        raise
    except (dns.exception.DNSException, OSError) as exc:
        raise _dns_problem(exc, rdtype, name) from None


async def _query(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> dns.resolver.Answer:
    try:
        return await _lookup(resolver, name, rdtype)
    except dns.resolver.NXDOMAIN as exc:
        raise _dns_problem(exc, rdtype, name) from None


async def resolve_addresses(name: str, settings: ValidationSettings) -> list[IPAddress]:
    """A and AAAA addresses of ``name`` (IPv4 first, no duplicates); AcmeProblem("dns") if there are none."""
    ident = {"type": "dns", "value": name}
    try:
        resolver = _resolver(settings)
        results = await asyncio.gather(
            _query(resolver, name, "A"), _query(resolver, name, "AAAA"), return_exceptions=True
        )
        addresses: list[IPAddress] = []
        problems: list[AcmeProblem] = []
        for result in results:
            if isinstance(result, AcmeProblem):
                problems.append(result)
            elif isinstance(result, BaseException):
                raise result
            elif result.rrset is not None:
                for rdata in result.rrset:
                    addr = ipaddress.ip_address(rdata.address)
                    if addr not in addresses:
                        addresses.append(addr)
        if addresses:
            return addresses
        if problems:
            raise problems[0]
        raise AcmeProblem("dns", f"no A or AAAA records found for {name}")
    except AcmeProblem as problem:
        problem.identifier = ident
        raise


# ---------------------------------------------------------------------------------------------
# shared plumbing


def _quote(data: bytes) -> str:
    """At most 64 characters of untrusted bytes, escaped, in double quotes."""
    text = data[:_QUOTE_CHARS].decode("utf-8", "replace")
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{escaped}"' + ("..." if len(data) > _QUOTE_CHARS else "")


def _key_authz_digest(key_authorization: str) -> bytes:
    return hashlib.sha256(key_authorization.encode("utf-8")).digest()


@contextlib.asynccontextmanager
async def _guarded(
    identifier: Mapping[str, str], challenge: str, settings: ValidationSettings
) -> AsyncIterator[None]:
    """Bound the whole validation in time and turn every failure into an AcmeProblem on the identifier."""
    source = identifier if isinstance(identifier, Mapping) else {}
    ident = {"type": str(source.get("type", "")), "value": str(source.get("value", ""))}
    deadline = settings.timeout * DEADLINE_ATTEMPTS
    try:
        try:
            async with asyncio.timeout(deadline):
                yield
        except AcmeProblem:
            raise
        except TimeoutError:
            raise AcmeProblem(
                "connection", f"{challenge} validation did not finish within {deadline:g} seconds"
            ) from None
        except Exception as exc:
            log.warning(
                "%s validation of %s failed unexpectedly: %s", challenge, ident["value"], type(exc).__name__
            )
            raise AcmeProblem(
                "serverInternal", f"{challenge} validation failed because of an internal error"
            ) from exc
    except AcmeProblem as problem:
        problem.identifier = ident
        log.info("%s validation of %s failed: %s", challenge, ident["value"], problem.kind)
        raise
    log.info("%s validation of %s succeeded", challenge, ident["value"])


async def _allowed_addresses(host: str, settings: ValidationSettings, *, redirected: bool) -> list[IPAddress]:
    """The addresses of ``host`` (a name or IP literal) the policy lets us connect to, in connect order.

    When none is allowed, the identifier's own name is a ``rejectedIdentifier`` (it will not
    pass on a retry); a redirect target is a ``connection`` failure of that response.
    """
    if "%" in host:  # an IPv6 zone names a local interface: never a validation target
        raise AcmeProblem("connection", f"{_quote(host.encode())} is not an address we can connect to")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            name = _dns_name(host)
        except AcmeProblem:
            raise AcmeProblem(
                "connection", f"{_quote(host.encode())} is not a host name we can connect to"
            ) from None
        addresses = await resolve_addresses(name, settings)
    allowed = [a for a in addresses if address_allowed(a, settings)]
    if not allowed:
        raise AcmeProblem("connection" if redirected else "rejectedIdentifier", _refusal(addresses[0]))
    return _connect_order(allowed)


class _ConnectFailed(Exception):
    """The TCP connection could not be made: worth trying the next address."""

    def __init__(self, problem: AcmeProblem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _connect_problem(exc: BaseException, where: str) -> AcmeProblem:
    """A connection problem naming the cause found in the exception chain, not its internals."""
    reason = "could not connect"
    seen: BaseException | None = exc
    for _ in range(10):  # httpx wraps the OSError a few levels down
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            reason = "connection refused"
            break
        if isinstance(seen, TimeoutError | httpx.ConnectTimeout):
            reason = "timeout while connecting"
            break
        if isinstance(seen, OSError) and seen.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            reason = "host or network unreachable"
            break
        seen = seen.__cause__ or seen.__context__
    return AcmeProblem("connection", f"{where}: {reason}")


async def _first_reachable(addresses: list[IPAddress], attempt: Callable[[IPAddress], Awaitable[_T]]) -> _T:
    """Run ``attempt(ip)`` per address until one connects; the last connect failure otherwise."""
    last: AcmeProblem | None = None
    for ip in addresses:
        try:
            return await attempt(ip)
        except _ConnectFailed as failed:
            last = failed.problem
    assert last is not None
    raise last


def _insecure_tls_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """TLS 1.2+ without certificate checks: RFC 8555 §8.3 and RFC 8737 ignore the chain."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


# ---------------------------------------------------------------------------------------------
# http-01


def _host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    default = 80 if scheme == "http" else 443
    return shown if port == default else f"{shown}:{port}"


def _redirect_target(current: httpx.URL, location: str | None, settings: ValidationSettings) -> httpx.URL:
    """The next URL to fetch, if the redirect stays on http/https and the validation ports."""
    if not location:
        raise AcmeProblem("connection", f"redirect from {current} has no Location header")
    if len(location) > 2048:
        raise AcmeProblem("connection", f"redirect from {current} has an overlong Location header")
    try:
        target = current.join(location.strip())
    except (httpx.InvalidURL, ValueError):  # ValueError: IDNA failures
        raise AcmeProblem(
            "connection", f"redirect from {current} to an invalid URL {_quote(location.encode())}"
        ) from None
    if target.scheme not in ("http", "https"):
        raise AcmeProblem("connection", f"redirect to unsupported scheme {_quote(target.scheme.encode())}")
    port = target.port or (80 if target.scheme == "http" else 443)
    ports = sorted({80, 443, settings.http_port, settings.tls_port})
    if port not in ports:
        allowed = ", ".join(str(p) for p in ports)
        raise AcmeProblem("connection", f"redirect to port {port} is not allowed (only {allowed})")
    if not target.host:
        raise AcmeProblem("connection", f"redirect to a URL without a host {_quote(location.encode())}")
    return target.copy_with(userinfo=b"", fragment=None)


async def _read_body(response: httpx.Response, where: str) -> bytes:
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise AcmeProblem(
            "incorrectResponse", f"{where}: the response is {length} bytes, more than {MAX_BODY}"
        )
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_BODY:
            raise AcmeProblem("incorrectResponse", f"{where}: the response is more than {MAX_BODY} bytes")
    return body


async def _fetch(
    client: httpx.AsyncClient, url: httpx.URL, settings: ValidationSettings, *, redirected: bool
) -> tuple[int, str | None, bytes]:
    """GET ``url`` at a checked address of its host: status, Location and (for 200) the body."""
    host = url.raw_host.decode("ascii")
    port = url.port or (80 if url.scheme == "http" else 443)
    headers = {
        "Host": _host_header(host, port, url.scheme),
        "User-Agent": _USER_AGENT,
        "Accept": "*/*",
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    is_name = not _is_ip_literal(host)
    extensions = {"sni_hostname": host} if url.scheme == "https" and is_name else {}

    async def attempt(ip: IPAddress) -> tuple[int, str | None, bytes]:
        where = f"{url.scheme}://{_host_header(host, port, url.scheme)} ({ip})"
        target = url.copy_with(host=str(ip))
        try:
            async with asyncio.timeout(settings.timeout):
                async with client.stream("GET", target, headers=headers, extensions=extensions) as response:
                    body = await _read_body(response, where) if response.status_code == 200 else b""
                    return response.status_code, response.headers.get("location"), body
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _ConnectFailed(_connect_problem(exc, where)) from None
        except (TimeoutError, httpx.TimeoutException):
            raise AcmeProblem("connection", f"{where}: timeout after {settings.timeout:g} seconds") from None
        except httpx.HTTPError:
            raise AcmeProblem(
                "connection", f"{where}: the server did not send a valid HTTP response"
            ) from None

    return await _first_reachable(await _allowed_addresses(host, settings, redirected=redirected), attempt)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def validate_http01(
    identifier: dict[str, str], token: str, key_authorization: str, settings: ValidationSettings
) -> None:
    """GET /.well-known/acme-challenge/<token> over plain HTTP; the body must be the key authorization."""
    async with _guarded(identifier, "http-01", settings):
        kind, value = _identifier(identifier, "http-01", ip_ok=True)
        if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            raise AcmeProblem("malformed", "the challenge token is not base64url")
        if kind == "ip" and not address_allowed(ipaddress.ip_address(value), settings):
            raise AcmeProblem("rejectedIdentifier", _refusal(ipaddress.ip_address(value)))
        url = httpx.URL(
            scheme="http", host=value, port=settings.http_port, path=f"/.well-known/acme-challenge/{token}"
        )
        expected = key_authorization.encode("utf-8")
        async with httpx.AsyncClient(
            verify=_insecure_tls_context(),
            trust_env=False,  # no proxies: they would resolve names themselves
            follow_redirects=False,
            timeout=settings.timeout,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=0),
        ) as client:
            for hop in range(MAX_REDIRECTS + 1):
                status, location, body = await _fetch(client, url, settings, redirected=hop > 0)
                if status in _REDIRECT_STATUSES:
                    if hop == MAX_REDIRECTS:
                        raise AcmeProblem("connection", f"too many redirects (more than {MAX_REDIRECTS})")
                    url = _redirect_target(url, location, settings)
                    continue
                if status != 200:
                    raise AcmeProblem("unauthorized", f"invalid response from {url}: HTTP {status}")
                if not hmac.compare_digest(body.rstrip(b" \t\r\n"), expected):
                    raise AcmeProblem(
                        "incorrectResponse",
                        f"the key authorization file at {url} does not match this challenge: received {_quote(body)}",
                    )
                return


# ---------------------------------------------------------------------------------------------
# dns-01


async def validate_dns01(
    identifier: dict[str, str], key_authorization: str, settings: ValidationSettings
) -> None:
    """A TXT record at _acme-challenge.<name> must hold base64url(SHA-256(key authorization))."""
    async with _guarded(identifier, "dns-01", settings):
        value = identifier.get("value") if isinstance(identifier, Mapping) else None
        if isinstance(value, str) and value.startswith("*."):
            identifier = {**identifier, "value": value[2:]}  # a wildcard is proved at its base name
        _, name = _identifier(identifier, "dns-01", ip_ok=False)
        qname = f"_acme-challenge.{name}"
        expected = base64.urlsafe_b64encode(_key_authz_digest(key_authorization)).rstrip(b"=")
        try:
            answer = await _lookup(_resolver(settings), qname, "TXT")
        except dns.resolver.NXDOMAIN:
            raise AcmeProblem("unauthorized", f"no TXT record found at {qname} (NXDOMAIN)") from None
        values = [b"".join(rdata.strings) for rdata in answer.rrset or ()]
        if not values:
            raise AcmeProblem("unauthorized", f"no TXT record found at {qname}")
        if any(hmac.compare_digest(v, expected) for v in values):
            return
        more = f" (and {len(values) - 1} more)" if len(values) > 1 else ""
        raise AcmeProblem(
            "incorrectResponse", f"incorrect TXT record {_quote(values[0])}{more} found at {qname}"
        )


# ---------------------------------------------------------------------------------------------
# tls-alpn-01


async def _tls_handshake(
    ip: IPAddress, name: str, settings: ValidationSettings
) -> tuple[str | None, bytes | None]:
    """Handshake with SNI ``name`` and ALPN acme-tls/1: the negotiated protocol and the peer's DER cert."""
    where = f"{name} ({ip}) port {settings.tls_port}"
    ctx = _insecure_tls_context([ACME_TLS_ALPN])
    try:
        async with asyncio.timeout(settings.timeout):
            _, writer = await asyncio.open_connection(
                str(ip),
                settings.tls_port,
                ssl=ctx,
                server_hostname=name,
                ssl_handshake_timeout=settings.timeout,
            )
    except TimeoutError:
        raise AcmeProblem("connection", f"{where}: timeout after {settings.timeout:g} seconds") from None
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        raise AcmeProblem("tls", f"{where}: TLS handshake failed ({reason})") from None
    except OSError as exc:
        raise _ConnectFailed(_connect_problem(exc, where)) from None
    try:
        sslobj = writer.get_extra_info("ssl_object")
        if not isinstance(sslobj, ssl.SSLObject):
            raise AcmeProblem("tls", f"{where}: no TLS session")
        return sslobj.selected_alpn_protocol(), sslobj.getpeercert(binary_form=True)
    finally:
        writer.transport.abort()


def _check_alpn_certificate(der: bytes, name: str, expected: bytes) -> None:
    """RFC 8737 §3: one dNSName SAN equal to the name and a critical acmeIdentifier with the digest."""
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension):
        raise AcmeProblem("incorrectResponse", "the tls-alpn-01 certificate could not be parsed") from None
    try:
        sans = list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        raise AcmeProblem("incorrectResponse", "the tls-alpn-01 certificate has no subjectAltName") from None
    if len(sans) != 1 or not isinstance(sans[0], x509.DNSName) or sans[0].value.lower().rstrip(".") != name:
        raise AcmeProblem(
            "incorrectResponse",
            f"the tls-alpn-01 certificate must have exactly one subjectAltName, the dNSName {name}",
        )
    try:
        ext = extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        raise AcmeProblem(
            "incorrectResponse", "the tls-alpn-01 certificate has no acmeIdentifier extension"
        ) from None
    if not ext.critical:
        raise AcmeProblem(
            "incorrectResponse", "the acmeIdentifier extension of the certificate is not critical"
        )
    if not hmac.compare_digest(ext.value.public_bytes(), expected):
        raise AcmeProblem(
            "incorrectResponse",
            "the acmeIdentifier extension of the certificate does not match the key authorization",
        )


async def validate_tlsalpn01(
    identifier: dict[str, str], key_authorization: str, settings: ValidationSettings
) -> None:
    """TLS to <name>:443 with ALPN acme-tls/1; the certificate must carry the key authorization digest."""
    async with _guarded(identifier, "tls-alpn-01", settings):
        _, name = _identifier(identifier, "tls-alpn-01", ip_ok=False)
        expected = b"\x04\x20" + _key_authz_digest(key_authorization)  # DER OCTET STRING (SIZE (32))

        async def attempt(ip: IPAddress) -> tuple[str | None, bytes | None]:
            return await _tls_handshake(ip, name, settings)

        alpn, der = await _first_reachable(
            await _allowed_addresses(name, settings, redirected=False), attempt
        )
        if alpn != ACME_TLS_ALPN:
            shown = "none" if alpn is None else _quote(alpn.encode())
            raise AcmeProblem(
                "tls", f"the server did not negotiate ALPN {ACME_TLS_ALPN} (negotiated {shown})"
            )
        if not der:
            raise AcmeProblem("tls", "the server sent no certificate")
        _check_alpn_certificate(der, name, expected)


# ---------------------------------------------------------------------------------------------
# dispatch


async def validate(
    challenge_type: str,
    identifier: dict[str, str],
    token: str,
    key_authorization: str,
    settings: ValidationSettings,
) -> None:
    """Run the validator for ``challenge_type``; returns on success, raises AcmeProblem otherwise."""
    if challenge_type == "http-01":
        await validate_http01(identifier, token, key_authorization, settings)
    elif challenge_type == "dns-01":
        await validate_dns01(identifier, key_authorization, settings)
    elif challenge_type == "tls-alpn-01":
        await validate_tlsalpn01(identifier, key_authorization, settings)
    else:
        ident = dict(identifier) if isinstance(identifier, Mapping) else None
        raise AcmeProblem(
            "malformed",
            f"unsupported challenge type {_quote(str(challenge_type).encode())}",
            identifier=ident,
        )
