"""``config/urls`` (mount-wide AIA URLs) and ``config/cluster`` (paths for AIA templating).

Issued certificates get these URLs through :attr:`store.SigningIssuer.aia`; an
issuer's own AIA settings, when any is set, replace the mount's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from strongroom.engines.pki import store
from strongroom.engines.pki.acme.context import settings_changed
from strongroom.engines.pki.issuer_ops import bad_url
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response
from strongroom.logical.storage import Storage, get_json, put_json

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

URL_LISTS = (
    "issuing_certificates",
    "crl_distribution_points",
    "delta_crl_distribution_points",
    "ocsp_servers",
)


class UrlPaths:
    def __init__(self, backend: PkiBackend) -> None:
        self.backend = backend

    @property
    def storage(self) -> Storage:
        return self.backend.storage

    @staticmethod
    def _view(aia: store.AIAUrls) -> dict[str, Any]:
        return {
            "issuing_certificates": list(aia.issuing_certificates),
            "crl_distribution_points": list(aia.crl_distribution_points),
            "delta_crl_distribution_points": list(aia.delta_crl_distribution_points),
            "ocsp_servers": list(aia.ocsp_servers),
            "enable_templating": aia.enable_templating,
        }

    async def read_urls(self, req: Request, d: FieldData) -> Response | None:
        return Response(data=self._view(await store.get_mount_aia(self.storage)))

    async def write_urls(self, req: Request, d: FieldData) -> Response | None:
        aia = await store.get_mount_aia(self.storage)
        templating, sent = d.get_ok("enable_templating")
        if sent:
            aia.enable_templating = bool(templating)
        for name in URL_LISTS:
            value, sent = d.get_ok(name)
            if sent:
                setattr(aia, name, [u for u in value if u])
        resp = Response()
        if aia.enable_templating:
            cluster = await store.get_cluster_config(self.storage)
            try:
                aia.templated("issuer-id", cluster["path"], cluster["aia_path"])
            except UserError as err:
                resp.add_warning(
                    f"issuance may fail: {err}\n\nConsider setting the cluster-local address if it is not "
                    "already set."
                )
        else:
            for name in URL_LISTS:
                bad = bad_url(getattr(aia, name))
                if bad:
                    raise UserError(
                        f"invalid URL found in Authority Information Access (AIA) parameter {name}: {bad}"
                    )
        await put_json(self.storage, "urls", aia.to_json())
        await store.bump_generation(self.storage)
        self.backend.invalidate_issuers()
        resp.data = self._view(aia)
        return resp

    async def read_cluster(self, req: Request, d: FieldData) -> Response | None:
        return Response(data=await store.get_cluster_config(self.storage))

    async def write_cluster(self, req: Request, d: FieldData) -> Response | None:
        config = dict(await get_json(self.storage, "config/cluster") or {})
        for name in ("path", "aia_path"):
            value, sent = d.get_ok(name)
            if not sent:
                continue
            text = str(value).strip().rstrip("/")
            parsed = urlparse(text)
            if text and (parsed.scheme not in ("http", "https") or not parsed.netloc):
                raise UserError(f"failed to parse {name} {text!r}: must be an http or https URL")
            config[name] = text
        await put_json(self.storage, "config/cluster", config)
        await store.bump_generation(self.storage)
        self.backend.invalidate_issuers()
        settings_changed(self.backend)  # ACME directory URLs are built from the cluster path
        return Response(data=await store.get_cluster_config(self.storage))


def paths(backend: PkiBackend) -> list[Path]:
    h = UrlPaths(backend)
    op = PathOperation
    url_fields = {name: Field(FieldType.COMMA_LIST, f"{name} URLs.") for name in URL_LISTS}
    url_fields["enable_templating"] = Field(FieldType.BOOL, "Template {{issuer_id}} and cluster paths.")
    return [
        Path(
            "config/urls",
            fields=url_fields,
            operations={
                Operation.READ: op(h.read_urls, "Read the mount's AIA URLs."),
                Operation.UPDATE: op(h.write_urls, "Set the mount's AIA URLs."),
            },
            synopsis="Set the URLs for the issuing CA, CRL distribution points, and OCSP servers.",
        ),
        Path(
            "config/cluster",
            fields={
                "path": Field(
                    FieldType.STRING, "This mount's URL on this cluster, e.g. https://node/v1/pki."
                ),
                "aia_path": Field(FieldType.STRING, "An alternative (e.g. plain-HTTP) URL for AIA fetches."),
            },
            operations={
                Operation.READ: op(h.read_cluster, "Read the cluster paths."),
                Operation.UPDATE: op(h.write_cluster, "Set the cluster paths."),
            },
            synopsis="Set cluster-local URLs used for AIA templating and ACME.",
        ),
    ]
