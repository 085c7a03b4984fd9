"""``sys/locked-users`` and ``sys/locked-users/<mount_accessor>/unlock/<alias_identifier>``.

In Vault the user lockout lives in core; here each auth method keeps its own counters
(see :mod:`strongroom.auth.common`), so this module asks the mount's backend. A backend
that can list its locked users offers ``async locked_users() -> list[str]``; one that can
lift a lock offers ``async unlock_user(alias)``. Approle keeps no role names with its
counters (a role_id is a credential), so its locks can be lifted but not listed.

The answer has Vault's shape (``by_namespace`` with the root namespace only, ``total``),
accessors and namespaces in decreasing order of locked users. Unlocking is idempotent:
an unknown accessor or a user that is not locked still answers 204, as in Vault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.core.core import Core
    from strongroom.core.mounts import MountEntry

_ROOT_NAMESPACE = {"namespace_id": "root", "namespace_path": ""}


def _backend(core: Core, entry: MountEntry) -> Any:
    route = core.router.get(entry.route_path)
    return None if route is None else route.backend


async def _locked(core: Core, entry: MountEntry) -> list[str]:
    lister = getattr(_backend(core, entry), "locked_users", None)
    if lister is None:
        return []
    names: list[str] = await lister()
    return names


def paths(core: Core) -> list[Path]:
    """The locked-users paths of the system backend."""

    async def list_locked(req: Request, d: FieldData) -> Response | None:
        accessor = str(d["mount_accessor"]).strip()
        by_accessor: list[dict[str, Any]] = []
        if accessor:
            entry = core.auth_mounts.find_by_accessor(accessor)
            names = await _locked(core, entry) if entry is not None else []
            by_accessor.append({"mount_accessor": accessor, "counts": len(names), "alias_identifiers": names})
        else:
            for entry in core.auth_mounts.entries.values():
                names = await _locked(core, entry)
                if names:
                    by_accessor.append(
                        {"mount_accessor": entry.accessor, "counts": len(names), "alias_identifiers": names}
                    )
        by_accessor.sort(key=lambda item: (-int(item["counts"]), str(item["mount_accessor"])))
        total = sum(int(item["counts"]) for item in by_accessor)
        namespace = {**_ROOT_NAMESPACE, "counts": total, "mount_accessors": by_accessor}
        return Response(data={"by_namespace": [namespace], "total": total})

    async def unlock(req: Request, d: FieldData) -> Response | None:
        entry = core.auth_mounts.find_by_accessor(str(d["mount_accessor"]))
        if entry is None:
            return None
        backend = _backend(core, entry)
        alias = str(d["alias_identifier"])
        unlocker = getattr(backend, "unlock_user", None)
        if unlocker is not None:
            await unlocker(alias)
            return None
        lockout = getattr(backend, "lockout", None)
        lockout_unlock = getattr(lockout, "unlock", None)
        if lockout_unlock is not None:
            lockout_unlock(alias)
        return None

    accessor_field = Field(FieldType.STRING, "The mount accessor of the auth method the user belongs to.")
    return [
        Path(
            "locked-users",
            {
                Operation.READ: PathOperation(
                    list_locked,
                    summary="Report the locked user count metrics, for this namespace and all child namespaces.",
                )
            },
            fields={"mount_accessor": accessor_field},
            synopsis="Report the locked user count metrics.",
            description=(
                "Lists the users currently locked out, per auth mount accessor; with "
                "mount_accessor, only that mount's."
            ),
        ),
        Path(
            "locked-users/{mount_accessor:segment}/unlock/{alias_identifier:segment}",
            {
                Operation.UPDATE: PathOperation(
                    unlock, summary="Unlocks the user with given mount_accessor and alias_identifier"
                )
            },
            fields={
                "mount_accessor": accessor_field,
                "alias_identifier": Field(
                    FieldType.STRING,
                    "The alias of the user: a username for userpass, a role_id for approle.",
                ),
            },
            synopsis="Unlock a locked user.",
            description="Unlocks the user; succeeds whether or not the user was locked.",
        ),
    ]
