"""The worker's alive_worker.* settings, as the shim hands them over."""

from __future__ import annotations

# typing is not imported at run time (see spi.py); mypy reads the first branch.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    class _SettingsFields(NamedTuple):
        database: str
        role: str
        schema: str
        table: str
        message: str
        interval_ms: int
        hook: str
        retention_s: int

    class _SnapshotFields(NamedTuple):
        generation: int  # reloads so far, counted by the shim
        settings: Settings
        probe_role: str
        hook_memory_limit_kb: int

else:
    from collections import namedtuple

    _SettingsFields = namedtuple(
        "Settings", ("database", "role", "schema", "table", "message", "interval_ms", "hook", "retention_s")
    )
    _SnapshotFields = namedtuple("Snapshot", ("generation", "settings", "probe_role", "hook_memory_limit_kb"))


# A named tuple rather than a dataclass: dataclasses imports inspect, about
# 1.7 MB of modules that the worker would carry for nothing.
class Settings(_SettingsFields):
    """What a hook is told of the settings (hooks.Tick.settings)."""

    __slots__ = ()

    @classmethod
    def current(cls) -> Settings:
        """The settings of the last snapshot the shim handed over."""
        return snapshot().settings


class Snapshot(_SnapshotFields):
    """The settings the shim holds, handed over at start and after each reload (aw_settings in
    _bridge.h): Python reads none of them again from the server."""

    __slots__ = ()


_snapshot: Snapshot | None = None


def receive(new: Snapshot) -> None:
    """Keeps the snapshot the shim handed over (alive_worker._worker)."""
    global _snapshot
    _snapshot = new


def snapshot() -> Snapshot:
    """The last snapshot the shim handed over."""
    if _snapshot is None:
        raise RuntimeError("alive_worker settings asked for before the shim handed them over")
    return _snapshot
