"""``sys/leases/*`` (and the old ``sys/renew``, ``sys/revoke*`` aliases): look up, list, renew,
revoke and tidy leases, all through :class:`~strongroom.core.expiration.ExpirationManager`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.core.core import Core
    from strongroom.core.expiration import ExpirationManager

S = FieldType.STRING
_TIDY_STARTED = (
    "Tidy operation successfully started. Any information from the operation will be printed to "
    "Vault's server logs."
)
_DEFAULT_LIST_LIMIT = 10000

_LEASE_ID = {
    "lease_id": Field(S, "The lease identifier to renew. This is included with a lease."),
    "url_lease_id": Field(S, "The lease identifier to renew. This is included with a lease."),
}
_RENEW = {
    **_LEASE_ID,
    "increment": Field(FieldType.DURATION, "The desired increment in seconds to the lease"),
}
_SYNC = {
    "sync": Field(
        FieldType.BOOL,
        "Whether or not to perform the revocation synchronously",
        default=True,
    )
}
_REVOKE = {**_LEASE_ID, **_SYNC}
_PREFIX = {"prefix": Field(S, 'The path to revoke keys under. Example: "prod/aws/ops"')}
_TYPE = {
    "type": Field(S, "Type of leases to get counts for (currently only supporting irrevocable).", query=True),
    "include_child_namespaces": Field(
        FieldType.BOOL, "Set true if you want counts for this namespace and its children.", query=True
    ),
}
_LIST = {
    **_TYPE,
    "limit": Field(
        S,
        'Set to a positive integer to limit the number of leases returned, or "none" for no limit.',
        query=True,
    ),
}


def paths(core: Core) -> list[Path]:
    def manager() -> ExpirationManager:
        if core.expiration is None:
            raise UserError("lease management is unavailable")
        m: ExpirationManager = core.expiration
        return m

    def lease_id_of(d: FieldData) -> str:
        lease_id = str(d["lease_id"] or d["url_lease_id"])
        if not lease_id:
            raise UserError("lease_id must be specified")
        return lease_id

    async def lookup(req: Request, d: FieldData) -> Response | None:
        lease_id = str(d["lease_id"])
        if not lease_id:
            raise UserError("lease_id must be specified")
        view = await manager().lookup(lease_id)
        if view is None:
            raise UserError("invalid lease")
        return Response(data=view)

    async def lookup_list(req: Request, d: FieldData) -> Response | None:
        keys = await manager().list_prefix(str(d["prefix"]))
        return Response(data={"keys": keys}) if keys else None

    async def renew(req: Request, d: FieldData) -> Response | None:
        warnings: list[str] = []
        secret = await manager().renew(lease_id_of(d), int(d["increment"]), warnings)
        return Response(secret=secret, warnings=warnings)

    async def revoke(req: Request, d: FieldData) -> Response | None:
        lease_id = lease_id_of(d)
        if d["sync"]:
            await manager().revoke(lease_id)
            return None
        await manager().lazy_revoke(lease_id)
        return Response(status=202)

    async def revoke_prefix(req: Request, d: FieldData) -> Response | None:
        sync = bool(d["sync"])
        await manager().revoke_prefix(str(d["prefix"]), force=False, sync=sync)
        return None if sync else Response(status=202)

    async def revoke_force(req: Request, d: FieldData) -> Response | None:
        await manager().revoke_prefix(str(d["prefix"]), force=True)
        return None

    async def tidy(req: Request, d: FieldData) -> Response | None:
        manager().start_tidy()  # one at a time; a second call while running is a no-op
        return Response(warnings=[_TIDY_STARTED], status=202)

    def irrevocable_requested(d: FieldData) -> bool:
        return str(d["type"]).lower() == "irrevocable"

    async def count(req: Request, d: FieldData) -> Response | None:
        if not irrevocable_requested(d):
            return None
        n = len(await manager().irrevocable())
        return Response(data={"lease_count": n, "counts": {"root": n} if n else {}})

    async def list_leases(req: Request, d: FieldData) -> Response | None:
        if not irrevocable_requested(d):
            return None
        raw_limit = str(d["limit"]).strip().lower()
        if raw_limit == "none":
            limit = 0
        elif raw_limit:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise UserError("invalid limit") from None
            if limit <= 0:
                raise UserError('limit must be positive or "none"')
        else:
            limit = _DEFAULT_LIST_LIMIT
        leases = await manager().irrevocable(limit + 1 if limit else 0)
        resp = Response()
        if limit and len(leases) > limit:
            leases = leases[:limit]
            resp.add_warning(
                f'Listing first {limit} leases: use the limit parameter ("none" for all) to see more'
            )
        resp.data = {"lease_count": len(leases), "leases": leases}
        return resp

    def update(handler: PathOperation) -> dict[Operation, PathOperation]:
        return {Operation.UPDATE: handler}

    renew_op = update(PathOperation(renew, "Renews a lease, requesting to extend the lease."))
    revoke_op = update(PathOperation(revoke, "Revokes a lease immediately."))
    prefix_op = update(
        PathOperation(revoke_prefix, "Revokes all secrets or tokens generated under a prefix.")
    )
    force_op = update(
        PathOperation(revoke_force, "Revokes all secrets under a prefix, ignoring backend errors.")
    )
    renew_syn = "Renew a lease on a secret"
    revoke_syn = "Revoke a leased secret immediately"
    prefix_syn = "Revoke all secrets generated in a given prefix"
    force_syn = "Revoke all secrets generated in a given prefix, ignoring errors."

    return [
        Path(
            "leases/lookup",
            fields={"lease_id": Field(S, "The lease identifier to look up.")},
            operations=update(PathOperation(lookup, "Retrieve lease metadata.")),
            synopsis="View or list lease metadata.",
        ),
        Path(
            "leases/lookup/{prefix:optpath}",
            fields={"prefix": Field(S, 'The path to list leases under. Example: "aws/creds/deploy"')},
            operations={Operation.LIST: PathOperation(lookup_list, "Returns a list of lease ids.")},
            sudo=True,
            synopsis="View or list lease metadata.",
        ),
        Path("leases/renew", fields=_RENEW, operations=renew_op, synopsis=renew_syn),
        Path("leases/renew/{url_lease_id:path}", fields=_RENEW, operations=renew_op, synopsis=renew_syn),
        Path("leases/revoke", fields=_REVOKE, operations=revoke_op, synopsis=revoke_syn),
        Path("leases/revoke/{url_lease_id:path}", fields=_REVOKE, operations=revoke_op, synopsis=revoke_syn),
        Path(
            "leases/revoke-prefix/{prefix:path}",
            fields={**_PREFIX, **_SYNC},
            operations=prefix_op,
            sudo=True,
            synopsis=prefix_syn,
        ),
        Path(
            "leases/revoke-force/{prefix:path}",
            fields=_PREFIX,
            operations=force_op,
            sudo=True,
            synopsis=force_syn,
        ),
        Path(
            "leases/tidy",
            operations=update(PathOperation(tidy, "Clean up dangling lease index entries.")),
            synopsis="This endpoint performs cleanup tasks that can be run if certain error conditions have "
            "occurred.",
        ),
        Path(
            "leases/count",
            fields=_TYPE,
            operations={
                Operation.READ: PathOperation(count, "Count of leases associated with this Vault cluster")
            },
            sudo=True,
            synopsis="Count of leases associated with this Vault cluster",
        ),
        Path(
            "leases",
            fields=_LIST,
            operations={
                Operation.READ: PathOperation(list_leases, "List leases associated with this Vault cluster")
            },
            sudo=True,
            synopsis="List leases associated with this Vault cluster",
        ),
        # the pre-0.8 locations, still served by Vault
        Path("renew", fields=_RENEW, operations=renew_op, synopsis=renew_syn),
        Path("renew/{url_lease_id:path}", fields=_RENEW, operations=renew_op, synopsis=renew_syn),
        Path("revoke", fields=_REVOKE, operations=revoke_op, synopsis=revoke_syn),
        Path("revoke/{url_lease_id:path}", fields=_REVOKE, operations=revoke_op, synopsis=revoke_syn),
        Path(
            "revoke-prefix/{prefix:path}",
            fields={**_PREFIX, **_SYNC},
            operations=prefix_op,
            sudo=True,
            synopsis=prefix_syn,
        ),
        Path(
            "revoke-force/{prefix:path}", fields=_PREFIX, operations=force_op, sudo=True, synopsis=force_syn
        ),
    ]
