"""Keys, default issuer/key configuration and ``DELETE root`` (appended by paths_issuers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography import x509

from strongroom.engines.pki import keys, store
from strongroom.engines.pki.issuer_ops import IssuerOps
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import StrongroomError, UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

NO_KEY_WARNING = (
    "This selected default issuer has no key associated with it. Some operations like issuing certificates and "
    "signing CRLs will be unavailable with the requested default issuer until a key is imported or the default "
    "issuer is changed."
)


def _skid_hex(key: keys.PrivateKey) -> str:
    digest = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    return ":".join(f"{b:02x}" for b in digest)


class KeyPaths(IssuerOps):
    """Handlers for keys/, key/{ref}, config/keys, config/issuers, root/replace and DELETE root."""

    async def list_keys(self, req: Request, d: FieldData) -> Response | None:
        entries = await store.list_keys(self.storage)
        if not entries:
            return None
        info = {e.id: {"key_name": e.name} for e in entries}
        return Response(data={"keys": sorted(info), "key_info": info})

    async def _key_for_admin(self, d: FieldData) -> store.KeyEntry:
        ref = str(d["key_ref"]).strip()
        if not ref:
            raise UserError("missing key reference")
        try:
            return await store.key_by_ref(self.storage, ref)
        except store.ReferenceNotFound as err:
            raise StrongroomError(*err.errors) from None

    @staticmethod
    def _key_view(entry: store.KeyEntry) -> dict[str, Any]:
        return {
            "key_id": entry.id,
            "key_name": entry.name,
            "key_type": entry.private_key_type,
            "subject_key_id": _skid_hex(entry.key()),
        }

    async def read_key(self, req: Request, d: FieldData) -> Response | None:
        return Response(data=self._key_view(await self._key_for_admin(d)))

    async def update_key(self, req: Request, d: FieldData) -> Response | None:
        async with self.backend.issuers_lock:
            entry = await self._key_for_admin(d)
            name = store.check_new_name(str(d["key_name"]), "key")
            if name and name != entry.name and await store.key_name_in_use(self.storage, name, entry.id):
                raise UserError("key name already in use")
            if name != entry.name:
                entry.name = name
                await store.write_key(self.storage, entry)
                self.backend.invalidate_issuers()
        resp = Response(data={"key_id": entry.id, "key_name": entry.name, "key_type": entry.private_key_type})
        if not name:
            resp.add_warning(
                "Name successfully deleted, you will now need to reference this key by it's Id: " + entry.id
            )
        return resp

    async def delete_key(self, req: Request, d: FieldData) -> Response | None:
        ref = str(d["key_ref"]).strip()
        async with self.backend.issuers_lock:
            entry = await self._key_for_admin(d)
            for issuer in await store.list_issuers(self.storage):
                if issuer.key_id == entry.id:
                    raise UserError(f"Failed to Delete Key.  Key in Use by Issuer: {issuer.id}")
            was_default = await store.delete_key(self.storage, entry.id)
            self.backend.invalidate_issuers()
        if was_default:
            return Response(
                warnings=[
                    f"Deleted key {entry.id} (via key_ref {ref}); this was configured as the default key. "
                    "Operations without an explicit key will not work until a new default is configured."
                ]
            )
        return None

    async def generate_key(self, req: Request, d: FieldData) -> Response | None:
        kind = str(d["exported"])
        if kind not in ("internal", "exported", "kms"):
            raise UserError('the "exported" path parameter must be "internal", "exported" or "kms"')
        if kind == "kms":
            raise UserError("managed keys (kms) are not supported by this server")
        key = await keys.generate_key_async(str(d["key_type"]), int(d["key_bits"]))
        async with self.backend.issuers_lock:
            name = await self.new_key_name(d)
            entry, _ = await store.import_key(self.storage, key, name)
            self.backend.invalidate_issuers()
        data = {"key_id": entry.id, "key_name": entry.name, "key_type": entry.private_key_type}
        if kind == "exported":
            data["private_key"] = keys.export_private_key(key)
        return Response(data=data)

    async def import_key(self, req: Request, d: FieldData) -> Response | None:
        _, pems = store.split_pem_bundle(str(d["pem_bundle"]))
        if len(pems) != 1:
            raise UserError("only a single key can be present within the pem_bundle for importing")
        key = keys.load_private_key(pems[0])
        async with self.backend.issuers_lock:
            name = await self.new_key_name(d)
            entry, existed = await store.import_key(self.storage, key, name)
            await self.issuers_changed()
        resp = Response(data={"key_id": entry.id, "key_name": entry.name, "key_type": entry.private_key_type})
        if existed:
            resp.add_warning("Key already imported, use key/ endpoint to update name.")
        return resp

    async def read_keys_config(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"default": await store.get_keys_default(self.storage)})

    async def write_keys_config(self, req: Request, d: FieldData) -> Response | None:
        ref = str(d["default"]).strip()
        if not ref or ref.lower() == store.DEFAULT_REF:
            raise UserError("Invalid key specification; must be non-empty and can't be 'default'.")
        async with self.backend.issuers_lock:
            try:
                key_id = await store.resolve_key_ref(self.storage, ref)
            except store.ReferenceNotFound as err:
                raise UserError(f"Error resolving key reference: {err}") from None
            await store.put_keys_default(self.storage, key_id)
        return Response(data={"default": key_id})

    async def read_issuers_config(self, req: Request, d: FieldData) -> Response | None:
        config = await store.get_issuers_config(self.storage)
        return Response(
            data={
                "default": config.default,
                "default_follows_latest_issuer": config.default_follows_latest_issuer,
            }
        )

    async def write_issuers_config(self, req: Request, d: FieldData) -> Response | None:
        warnings: list[str] = []
        async with self.backend.issuers_lock:
            config = await store.get_issuers_config(self.storage)
            ref, sent = d.get_ok("default")
            if sent or req.path == "root/replace":
                ref = str(ref).strip()
                if not ref or ref.lower() == store.DEFAULT_REF:
                    raise UserError("Invalid issuer specification; must be non-empty and can't be 'default'.")
                try:
                    config.default = await store.resolve_issuer_ref(self.storage, ref)
                except store.ReferenceNotFound as err:
                    raise UserError(f"Error resolving issuer reference: {err}") from None
                entry = await store.fetch_issuer(self.storage, config.default)
                if entry is not None and not entry.key_id:
                    warnings.append(NO_KEY_WARNING)
            follows, follows_sent = d.get_ok("default_follows_latest_issuer")
            if follows_sent:
                config.default_follows_latest_issuer = bool(follows)
            await store.put_issuers_config(self.storage, config)
            self.backend.invalidate_issuers()
        return Response(
            data={
                "default": config.default,
                "default_follows_latest_issuer": config.default_follows_latest_issuer,
            },
            warnings=warnings,
        )

    async def delete_root(self, req: Request, d: FieldData) -> Response | None:
        async with self.backend.issuers_lock:
            for issuer_id in await store.list_issuer_ids(self.storage):
                await store.delete_issuer(self.storage, issuer_id)
            for key_id in await store.list_key_ids(self.storage):
                await store.delete_key(self.storage, key_id)
            await self.issuers_changed()
        return Response(
            warnings=[
                "DELETE /root deletes all keys and issuers; prefer the new DELETE /key/:key_ref and DELETE "
                "/issuer/:issuer_ref for finer granularity, unless removal of all keys and issuers is desired."
            ]
        )


def paths(backend: PkiBackend) -> list[Path]:
    h = KeyPaths(backend)
    op = PathOperation
    key_ref = {"key_ref": Field(FieldType.STRING, "Key id, name or default.", default="default")}
    gen_fields = {
        "exported": Field(FieldType.STRING),
        "key_type": Field(
            FieldType.STRING, "rsa, ec or ed25519.", default="rsa", allowed=("rsa", "ec", "ed25519")
        ),
        "key_bits": Field(FieldType.INT, "Key size; 0 picks the type's default.", default=0),
        "key_name": Field(FieldType.STRING, "Name of the new key."),
        "managed_key_name": Field(FieldType.STRING, "Managed keys are not supported."),
        "managed_key_id": Field(FieldType.STRING, "Managed keys are not supported."),
    }
    issuers_config = {
        "default": Field(FieldType.STRING, "Reference (id or name) of the default issuer."),
        "default_follows_latest_issuer": Field(FieldType.BOOL, "Make new issuers the default."),
    }
    return [
        Path(
            "keys/",
            fields={"after": Field(FieldType.STRING, query=True), "limit": Field(FieldType.INT, query=True)},
            operations={Operation.LIST: op(h.list_keys, "List keys.")},
            synopsis="Fetch a list of all issuer keys.",
        ),
        Path(
            "keys/generate/{exported}",
            fields=gen_fields,
            operations={Operation.UPDATE: op(h.generate_key, "Generate a key.")},
            synopsis="Generate a new private key used for signing.",
        ),
        Path(
            "keys/import",
            fields={
                "pem_bundle": Field(FieldType.STRING, "PEM private key."),
                "key_name": gen_fields["key_name"],
            },
            operations={Operation.UPDATE: op(h.import_key, "Import a key.")},
            synopsis="Import the specified key.",
        ),
        Path(
            "key/{key_ref}",
            fields={**key_ref, "key_name": Field(FieldType.STRING, "New name of the key.")},
            operations={
                Operation.READ: op(h.read_key, "Read a key."),
                Operation.UPDATE: op(h.update_key, "Rename a key."),
                Operation.DELETE: op(h.delete_key, "Delete a key not used by any issuer."),
            },
            synopsis="Fetch a single issuer key.",
        ),
        Path(
            "config/keys",
            fields={"default": Field(FieldType.STRING, "Reference of the default key.")},
            operations={
                Operation.READ: op(h.read_keys_config, "Read the default key."),
                Operation.UPDATE: op(h.write_keys_config, "Set the default key."),
            },
            synopsis="Read and set the default key.",
        ),
        Path(
            "config/issuers",
            fields=issuers_config,
            operations={
                Operation.READ: op(h.read_issuers_config, "Read the default issuer."),
                Operation.UPDATE: op(h.write_issuers_config, "Set the default issuer."),
            },
            synopsis="Read and set the default issuer.",
        ),
        Path(
            "root/replace",
            fields={
                **issuers_config,
                "default": Field(FieldType.STRING, "New default issuer.", default="next"),
            },
            operations={Operation.UPDATE: op(h.write_issuers_config, "Replace the default issuer.")},
            synopsis="Make a (rotated) issuer the default.",
        ),
        Path(
            "root",
            operations={Operation.DELETE: op(h.delete_root, "Delete every issuer and key.")},
            synopsis="Deletes the root CA key to allow a new one to be generated.",
            sudo=True,
        ),
    ]
