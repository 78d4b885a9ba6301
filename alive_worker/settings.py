"""The worker's alive_worker.* settings, as PostgreSQL holds them."""

from __future__ import annotations

from alive_worker import spi

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

else:
    from collections import namedtuple

    _SettingsFields = namedtuple(
        "Settings", ("database", "role", "schema", "table", "message", "interval_ms", "hook", "retention_s")
    )


def _read(name: str) -> str:
    value = spi.setting(f"alive_worker.{name}")
    if value is None:
        raise RuntimeError(f"alive_worker.{name} is not defined: is alive_worker preloaded?")
    return value


# A named tuple rather than a dataclass: dataclasses imports inspect, about
# 1.7 MB of modules that the worker would carry for nothing.
class Settings(_SettingsFields):
    """A snapshot of the settings, taken at start and after each reload."""

    __slots__ = ()

    @classmethod
    def current(cls) -> Settings:
        """Reads every setting; the shim has validated them already."""
        return cls(
            database=_read("database"),
            role=_read("role"),
            schema=_read("schema"),
            table=_read("table"),
            message=_read("message"),
            # GetConfigOption gives numbers in their base unit, without it.
            interval_ms=int(_read("interval")),
            hook=_read("hook"),
            retention_s=int(_read("retention")),
        )
