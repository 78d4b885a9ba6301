"""The worker's alive_worker.* settings, as the shim hands them over."""

from __future__ import annotations

from typing import NamedTuple


# A NamedTuple rather than a dataclass: dataclasses imports inspect, about
# 1.7 MB of modules that the worker would carry for nothing.
class Settings(NamedTuple):
    """What a hook is told of the settings (hooks.Tick.settings)."""

    database: str
    role: str
    schema: str
    table: str
    message: str
    interval_ms: int
    hook: str
    retention_s: int

    @classmethod
    def current(cls) -> Settings:
        """The settings of the last snapshot the shim handed over."""
        return snapshot().settings


class Snapshot(NamedTuple):
    """The settings the shim holds, handed over at start and after each reload (aw_settings in
    _bridge.h): Python reads none of them again from the server."""

    generation: int  # reloads so far, counted by the shim
    settings: Settings
    probe_role: str
    hook_memory_limit_kb: int


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
