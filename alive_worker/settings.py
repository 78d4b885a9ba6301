"""The worker's alive_worker.* settings, as PostgreSQL holds them."""

from __future__ import annotations

from typing import NamedTuple

from alive_worker import spi


def _read(name: str) -> str:
    value = spi.setting(f"alive_worker.{name}")
    if value is None:
        raise RuntimeError(f"alive_worker.{name} is not defined: is alive_worker preloaded?")
    return value


# A NamedTuple rather than a dataclass: dataclasses imports inspect, about
# 1.7 MB of modules that the worker would carry for nothing.
class Settings(NamedTuple):
    """A snapshot of the settings, taken at start and after each reload."""

    database: str
    role: str
    schema: str
    table: str
    message: str
    interval_ms: int
    hook: str

    @classmethod
    def current(cls) -> Settings:
        """Reads every setting; the shim has validated them already."""
        return cls(
            database=_read("database"),
            role=_read("role"),
            schema=_read("schema"),
            table=_read("table"),
            message=_read("message"),
            interval_ms=_interval_ms(_read("interval")),
            hook=_read("hook"),
        )


_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def _interval_ms(shown: str) -> int:
    """GetConfigOption shows an interval with its unit, as SHOW does (10s, 1min)."""
    digits = shown.rstrip("abcdefghijklmnopqrstuvwxyz")
    return int(digits) * _UNIT_MS[shown[len(digits) :] or "ms"]
