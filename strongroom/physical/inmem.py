"""In-memory physical storage for dev mode and tests; nothing survives a restart."""

from __future__ import annotations

from strongroom.logical.storage import InmemStorage


class InmemPhysical(InmemStorage):
    name = "inmem"

    async def close(self) -> None:
        return None
