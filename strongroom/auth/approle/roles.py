"""AppRole role management: ``role/<name>`` and its per-field sub-paths, role IDs, policies, period."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from strongroom.auth.approle.base import ROLE_FIELDS, ROLE_NAME_FIELD, AppRoleBase, op
from strongroom.auth.approle.store import (
    ROLE_PREFIX,
    Keys,
    Role,
    load_role,
    load_secret,
)
from strongroom.auth.common import (
    TokenParams,
    parse_cidrs,
    parse_policies,
    validate_cidr_blocks,
)
from strongroom.core.ttl import go_duration
from strongroom.framework import Display, FieldData, Path
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response
from strongroom.logical.storage import Storage


class RoleHandlers(AppRoleBase):
    """Handlers for roles (Vault's path_role.go, minus secret IDs)."""

    def _field_paths(self, disp: Display) -> list[Path]:
        """``role/<name>/<field>``: read, write and reset one setting of a role, as Vault does."""

        def simple(
            suffix: str,
            name: str,
            get: Callable[[Role], Any],
            put: Callable[[Role, Any], None],
            reset: Any,
            check: Callable[[Role], str | None] = lambda _r: None,
        ) -> Path:
            async def read(req: Request, d: FieldData) -> Response | None:
                role = await self._role(d)
                return None if role is None else Response(data={name: get(role)})

            async def write(req: Request, d: FieldData) -> Response | None:
                async with self._lock:
                    role = await self._existing_role(d)
                    if not d.sent(name):
                        raise UserError(f"missing {name}")
                    put(role, d.get(name))
                    problem = check(role)
                    if problem:
                        raise UserError(problem)
                    await self._save_role(role, role.role_id)
                return None

            async def delete(req: Request, d: FieldData) -> Response | None:
                async with self._lock:
                    role = await self._role(d)
                    if role is None:
                        return None
                    put(role, reset)
                    await self._save_role(role, role.role_id)
                return None

            return Path(
                f"role/{{role_name}}/{suffix}",
                {Operation.READ: op(read), Operation.UPDATE: op(write), Operation.DELETE: op(delete)},
                fields={"role_name": ROLE_NAME_FIELD, name: ROLE_FIELDS[name]},
                synopsis=f"The {name} setting of the role.",
                display=disp,
            )

        def set_attr(attr: str) -> Callable[[Role, Any], None]:
            return lambda role, value: setattr(role, attr, value)

        def set_token(attr: str) -> Callable[[Role, Any], None]:
            return lambda role, value: setattr(role.token, attr, value)

        def negative(name: str, attr: str) -> Callable[[Role], str | None]:
            return lambda role: f"{name} cannot be negative" if getattr(role, attr) < 0 else None

        def ttl_check(message: str) -> Callable[[Role], str | None]:
            return lambda role: message if 0 < role.token.max_ttl < role.token.ttl else None

        return [
            simple(
                "secret-id-num-uses",
                "secret_id_num_uses",
                lambda r: r.secret_id_num_uses,
                set_attr("secret_id_num_uses"),
                0,
                negative("secret_id_num_uses", "secret_id_num_uses"),
            ),
            simple(
                "secret-id-ttl",
                "secret_id_ttl",
                lambda r: r.secret_id_ttl,
                set_attr("secret_id_ttl"),
                0,
            ),
            simple(
                "token-ttl",
                "token_ttl",
                lambda r: r.token.ttl,
                set_token("ttl"),
                0,
                ttl_check("token_ttl should not be greater than token_max_ttl"),
            ),
            simple(
                "token-max-ttl",
                "token_max_ttl",
                lambda r: r.token.max_ttl,
                set_token("max_ttl"),
                0,
                ttl_check("token_max_ttl should be greater than or equal to token_ttl"),
            ),
            simple(
                "token-num-uses",
                "token_num_uses",
                lambda r: r.token.num_uses,
                set_token("num_uses"),
                0,
                lambda r: "'token_num_uses' cannot be negative" if r.token.num_uses < 0 else None,
            ),
            simple(
                "bind-secret-id",
                "bind_secret_id",
                lambda r: r.bind_secret_id,
                set_attr("bind_secret_id"),
                True,
            ),
            self._cidr_path(disp, "secret-id-bound-cidrs", "secret_id_bound_cidrs"),
            self._cidr_path(disp, "bound-cidr-list", "bound_cidr_list"),
            self._cidr_path(disp, "token-bound-cidrs", "token_bound_cidrs"),
            Path(
                "role/{role_name}/policies",
                {
                    Operation.READ: op(self._policies_read),
                    Operation.UPDATE: op(self._policies_write),
                    Operation.DELETE: op(self._policies_delete),
                },
                fields={
                    "role_name": ROLE_NAME_FIELD,
                    "policies": ROLE_FIELDS["policies"],
                    "token_policies": ROLE_FIELDS["token_policies"],
                },
                synopsis="Policies of the role.",
                display=disp,
            ),
            Path(
                "role/{role_name}/period",
                {
                    Operation.READ: op(self._period_read),
                    Operation.UPDATE: op(self._period_write),
                    Operation.DELETE: op(self._period_delete),
                },
                fields={
                    "role_name": ROLE_NAME_FIELD,
                    "period": ROLE_FIELDS["period"],
                    "token_period": ROLE_FIELDS["token_period"],
                },
                synopsis="Updates the value of 'period' on the role",
                display=disp,
            ),
        ]

    def _cidr_path(self, disp: Display, suffix: str, name: str) -> Path:
        token = name == "token_bound_cidrs"

        async def read(req: Request, d: FieldData) -> Response | None:
            role = await self._role(d)
            if role is None:
                return None
            if token:
                return Response(data={name: list(role.token.bound_cidrs)})
            resp = Response(data={name: list(role.secret_id_bound_cidrs) or None})
            if name == "bound_cidr_list":
                resp.add_warning(
                    'The "bound_cidr_list" field is deprecated and will be removed. '
                    'Please use "secret_id_bound_cidrs" instead.'
                )
            return resp

        async def write(req: Request, d: FieldData) -> Response | None:
            async with self._lock:
                role = await self._existing_role(d)
                if token:
                    if d.sent(name):
                        role.token.bound_cidrs = parse_cidrs(d.get(name), name)
                elif d.sent(name):
                    cidrs = [c.strip() for c in d.get(name) if c.strip()]
                    if not cidrs:
                        raise UserError("missing bound_cidr_list")
                    if not validate_cidr_blocks(cidrs):
                        raise UserError("failed to validate CIDR blocks")
                    role.secret_id_bound_cidrs = cidrs
                await self._save_role(role, role.role_id)
            return None

        async def delete(req: Request, d: FieldData) -> Response | None:
            async with self._lock:
                role = await self._role(d)
                if role is None:
                    return None
                if token:
                    role.token.bound_cidrs = []
                else:
                    role.secret_id_bound_cidrs = []
                await self._save_role(role, role.role_id)
            return None

        return Path(
            f"role/{{role_name}}/{suffix}",
            {Operation.READ: op(read), Operation.UPDATE: op(write), Operation.DELETE: op(delete)},
            fields={"role_name": ROLE_NAME_FIELD, name: ROLE_FIELDS[name]},
            synopsis=f"The {name} setting of the role.",
            display=disp,
        )

    # -- roles -------------------------------------------------------------------------------

    async def _role_exists(self, req: Request, d: FieldData) -> bool:
        return await self._role(d) is not None

    async def _role_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list(ROLE_PREFIX)})

    async def _role_write(self, req: Request, d: FieldData) -> Response | None:
        name = self._name(d)
        warnings: list[str] = []
        async with self._lock:
            role = await load_role(self.storage, name)
            create = role is None
            if role is None:
                role = Role(name=name)
            if d.sent("token_type"):
                # Vault's backwards-compatibility case for roles
                text = str(d.get("token_type")).strip()
                if text in ("default-service", "default-batch"):
                    adjusted = text.removeprefix("default-")
                    warnings.append(f"{text} has no useful meaning; adjusting to {adjusted}")
                    d = FieldData(d.fields, {**d.raw, "token_type": adjusted})
            role.token = TokenParams.from_fields(d, role.token)
            if d.sent("local_secret_ids"):
                if not create:
                    raise UserError("local_secret_ids can only be modified during role creation")
                role.local_secret_ids = bool(d.get("local_secret_ids"))
            previous_role_id = role.role_id
            if d.sent("role_id"):
                role.role_id = str(d.get("role_id")).strip()
            elif create:
                role.role_id = str(uuid.uuid4())
            if not role.role_id:
                raise UserError("invalid role_id supplied, or failed to generate a role_id")
            if d.sent("bind_secret_id"):
                role.bind_secret_id = bool(d.get("bind_secret_id"))
            for cidr_field in ("secret_id_bound_cidrs", "bound_cidr_list"):
                if d.sent(cidr_field):
                    role.secret_id_bound_cidrs = [c.strip() for c in d.get(cidr_field) if c.strip()]
                    break
            if role.secret_id_bound_cidrs and not validate_cidr_blocks(role.secret_id_bound_cidrs):
                raise UserError("invalid CIDR blocks")
            if d.sent("secret_id_num_uses"):
                role.secret_id_num_uses = int(d.get("secret_id_num_uses"))
            if role.secret_id_num_uses < 0:
                raise UserError("secret_id_num_uses cannot be negative")
            if d.sent("secret_id_ttl"):
                role.secret_id_ttl = int(d.get("secret_id_ttl"))
            self._check_period(role.token.period)
            if role.token.max_ttl > self._max_lease_ttl():
                warnings.append(
                    "token_max_ttl is greater than the backend mount's maximum TTL value; issued "
                    "tokens' max TTL value will be truncated"
                )
            await self._save_role(role, previous_role_id)
        return Response(warnings=warnings) if warnings else None

    def _check_period(self, period: int) -> None:
        ceiling = self._max_lease_ttl()
        if period > ceiling:
            raise UserError(
                f'period of "{go_duration(period)}" is greater than the backend\'s maximum lease TTL '
                f'of "{go_duration(ceiling)}"'
            )

    async def _role_read(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(d)
        if role is None:
            return None
        data: dict[str, Any] = {
            "bind_secret_id": role.bind_secret_id,
            "secret_id_bound_cidrs": list(role.secret_id_bound_cidrs) or None,
            "secret_id_num_uses": role.secret_id_num_uses,
            "secret_id_ttl": role.secret_id_ttl,
            "local_secret_ids": role.local_secret_ids,
            **role.token.to_api(),
        }
        return Response(data=data)

    async def _role_delete(self, req: Request, d: FieldData) -> Response | None:
        async with self._lock:
            role = await self._role(d)
            if role is None:
                return None
            folder = await self.keys.role_secrets(role.name)
            index_key = await self.keys.role_id(role.role_id)
            async with self.storage.transaction() as txn:
                await self._flush_secrets(txn, folder)
                await txn.delete(index_key)
                await txn.delete(Keys.role(role.name))
        return None

    async def _flush_secrets(self, storage: Storage, folder: str) -> None:
        for name in await storage.list(folder):
            if name.endswith("/"):
                continue
            entry = await load_secret(storage, folder + name)
            if entry is not None:
                await storage.delete(await self.keys.accessor(entry.accessor))
            await storage.delete(folder + name)

    async def _local_secret_ids_read(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(d)
        return None if role is None else Response(data={"local_secret_ids": role.local_secret_ids})

    async def _role_id_read(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(d)
        return None if role is None else Response(data={"role_id": role.role_id})

    async def _role_id_write(self, req: Request, d: FieldData) -> Response | None:
        async with self._lock:
            role = await self._existing_role(d)
            previous = role.role_id
            role.role_id = str(d.get("role_id")).strip()
            if not role.role_id:
                raise UserError("missing role_id")
            await self._save_role(role, previous)
        return None

    async def _policies_read(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(d)
        if role is None:
            return None
        data: dict[str, Any] = {"token_policies": list(role.token.policies)}
        if role.token.legacy.get("policies"):
            data["policies"] = list(role.token.legacy["policies"])
        return Response(data=data)

    async def _policies_write(self, req: Request, d: FieldData) -> Response | None:
        async with self._lock:
            role = await self._existing_role(d)
            if d.sent("token_policies"):
                role.token.policies = parse_policies(d.get("token_policies"))
                if d.sent("policies"):
                    role.token.legacy["policies"] = list(role.token.policies)
                else:
                    role.token.legacy.pop("policies", None)
            elif d.sent("policies"):
                role.token.policies = parse_policies(d.get("policies"))
                role.token.legacy["policies"] = list(role.token.policies)
            else:
                raise UserError("missing token_policies")
            await self._save_role(role, role.role_id)
        return None

    async def _policies_delete(self, req: Request, d: FieldData) -> Response | None:
        async with self._lock:
            role = await self._role(d)
            if role is None:
                return None
            role.token.policies = []
            role.token.legacy.pop("policies", None)
            await self._save_role(role, role.role_id)
        return None

    async def _period_read(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(d)
        if role is None:
            return None
        data: dict[str, Any] = {"token_period": role.token.period}
        if role.token.legacy.get("period"):
            data["period"] = role.token.legacy["period"]
        return Response(data=data)

    async def _period_write(self, req: Request, d: FieldData) -> Response | None:
        async with self._lock:
            role = await self._existing_role(d)
            if d.sent("token_period"):
                role.token.period = int(d.get("token_period"))
                if d.sent("period"):
                    role.token.legacy["period"] = role.token.period
                else:
                    role.token.legacy.pop("period", None)
            elif d.sent("period"):
                role.token.period = int(d.get("period"))
                role.token.legacy["period"] = role.token.period
            else:
                raise UserError("missing period")
            self._check_period(role.token.period)
            await self._save_role(role, role.role_id)
        return None

    async def _period_delete(self, req: Request, d: FieldData) -> Response | None:
        async with self._lock:
            role = await self._role(d)
            if role is None:
                return None
            role.token.period = 0
            role.token.legacy.pop("period", None)
            await self._save_role(role, role.role_id)
        return None
