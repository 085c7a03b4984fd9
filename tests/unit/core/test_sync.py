"""Cross-process cache invalidation inside one process: requests and reloads."""

from __future__ import annotations


async def test_a_request_waits_for_another_requests_reload_of_the_mount_table() -> None:
    """changed() marks a change seen at once; a second request must not route before the reload ends."""
    import asyncio

    from strongroom.core.sync import Kind, SharedGenerations
    from strongroom.testing import running_core

    async with running_core() as h:
        core = h.core
        sync = SharedGenerations(2)
        sync.attach(1)
        sync.bump(Kind.MOUNTS)  # "another process" changed the mount table ...
        sync.attach(0)
        sync._seen[Kind.MOUNTS] -= 1  # ... after this process last looked
        core.sync = sync
        events: list[str] = []
        load = core._load_mounts

        async def slow_load() -> None:
            events.append("reload started")
            await asyncio.sleep(0.05)
            await load()
            events.append("reload finished")

        core._load_mounts = slow_load  # type: ignore[method-assign]

        async def second() -> None:
            await asyncio.sleep(0.01)  # arrives while the first is reloading
            await core._sync_caches(sync)
            events.append("second routes")

        await asyncio.gather(core._sync_caches(sync), second())
        assert events == ["reload started", "reload finished", "second routes"]
        core.sync = None
