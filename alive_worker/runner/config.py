"""The runner's settings: the worker's alive_worker.* settings, from a file, the environment and flags.

Each setting has the worker's name, meaning, default and units, so that a
line of postgresql.conf works unchanged in the runner's file.  Where a value
comes from, the later wins: the default, the file (``--config``, lines of
``name = value`` as in postgresql.conf, with or without the
``alive_worker.`` prefix, values optionally in single quotes, ``#``
comments), the environment (``ALIVE_WORKER_INTERVAL=1s``, as containers
set it), then the command line (``--interval 1s``).  A value that cannot be
read fails at start with a message naming the setting and where it came
from: the runner never writes with a setting it guessed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

# The worker's bounds (src/settings.h).
MIN_INTERVAL_MS = 10
MAX_INTERVAL_MS = 24 * 60 * 60 * 1000
ENVIRONMENT_PREFIX = "ALIVE_WORKER_"
HOOK_FAILURE_CHOICES = ("log", "fail_tick")


class ConfigError(Exception):
    """A setting that cannot be used, named with where it came from."""


_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_QUANTITY = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def _quantity(text: str, base_unit: str) -> int:
    """A PostgreSQL time value ('1s', '500ms', '10', '2min') in base_unit (ms or s)."""
    match = _QUANTITY.match(text.lower())
    if not match:
        raise ValueError(f"not a time: {text!r} (e.g. 500ms, 1s, 5min)")
    number, unit = float(match.group(1)), match.group(2) or base_unit
    if unit not in _UNITS_MS:
        raise ValueError(f"unknown unit {unit!r} in {text!r}: use us, ms, s, min, h or d")
    value = number * _UNITS_MS[unit] / _UNITS_MS[base_unit]
    return round(value)


def _milliseconds(text: str) -> int:
    return _quantity(text, "ms")


def _seconds(text: str) -> int:
    return _quantity(text, "s")


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r} (on or off)")


def _text(text: str) -> str:
    return text


def _listen(text: str) -> str:
    if not text:
        return ""
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"not ADDRESS:PORT: {text!r} (e.g. 127.0.0.1:9188)")
    return text


@dataclass(frozen=True)
class RunnerSettings:
    """Everything the runner is configured with (field names are the settings' names)."""

    dsn: str = ""
    schema: str = "public"
    table: str = "log_table"
    message: str = "STILL ALIVE and counting!"
    interval: int = 10_000  # ms
    hook: str = ""
    hook_failure: str = "log"
    tick_timeout: int = 0  # ms; 0 means the interval
    retention: int = 0  # s; 0 keeps every row
    clock_aligned: bool = False
    metrics_listen: str = ""  # ADDRESS:PORT of the runner's own /metrics; empty for none
    reconnect_max: int = 30_000  # ms: the longest wait between two connection attempts

    @property
    def tick_timeout_ms(self) -> int:
        return self.tick_timeout or self.interval

    def alive_worker_setting(self, name: str) -> str | None:
        """What alive_worker.spi.setting("alive_worker.NAME") answers in the runner, in the worker's units."""
        short = name.removeprefix("alive_worker.")
        if short not in PARSERS:
            return None
        value = getattr(self, short)
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value)


PARSERS: dict[str, Callable[[str], object]] = {
    "dsn": _text,
    "schema": _text,
    "table": _text,
    "message": _text,
    "interval": _milliseconds,
    "hook": _text,
    "hook_failure": _text,
    "tick_timeout": _milliseconds,
    "retention": _seconds,
    "clock_aligned": _boolean,
    "metrics_listen": _listen,
    "reconnect_max": _milliseconds,
}
assert set(PARSERS) == {field.name for field in fields(RunnerSettings)}

_LINE = re.compile(r"""^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*('(?:[^']|'')*'|[^#\s]*)\s*(?:#.*)?$""")


def read_file(path: Path) -> dict[str, str]:
    """``name = value`` lines, as postgresql.conf writes them."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from error
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ConfigError(f"{path}:{number}: cannot read {line.strip()!r}: write name = value")
        name, value = match.group(1).removeprefix("alive_worker."), match.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("''", "'")
        values[f"{path}:{number}:{name}"] = value
    return values


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """ALIVE_WORKER_NAME variables of the settings' names: others (a build's, a test's) are not ours to refuse."""
    values = {}
    for key, value in environ.items():
        name = key.removeprefix(ENVIRONMENT_PREFIX).lower()
        if key.startswith(ENVIRONMENT_PREFIX) and name in PARSERS:
            values[f"environment variable {key}:{name}"] = value
    return values


def build(
    file: Path | None, flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None
) -> RunnerSettings:
    """The settings from the file, the environment, then flags (later wins); checked."""
    environ = os.environ if environ is None else environ
    sources: list[dict[str, str]] = []
    if file is None and environ.get(f"{ENVIRONMENT_PREFIX}CONFIG"):
        file = Path(environ[f"{ENVIRONMENT_PREFIX}CONFIG"])
    if file is not None:
        sources.append(read_file(file))
    sources.append(from_environment(environ))
    sources.append(
        {f"--{name.replace('_', '-')}:{name}": value for name, value in flags.items() if value is not None}
    )
    settings = RunnerSettings()
    for source in sources:
        for key, value in source.items():
            where, _, name = key.rpartition(":")
            parse = PARSERS.get(name)
            if parse is None:
                raise ConfigError(f"{where}: unknown setting {name!r}; known: {', '.join(sorted(PARSERS))}")
            try:
                parsed = parse(value)
            except ValueError as error:
                raise ConfigError(f"{where}: {name}: {error}") from error
            settings = replace(settings, **{name: parsed})  # type: ignore[arg-type]
    check(settings)
    return settings


def check(settings: RunnerSettings) -> None:
    if not MIN_INTERVAL_MS <= settings.interval <= MAX_INTERVAL_MS:
        raise ConfigError(
            f"interval: {settings.interval} ms is outside {MIN_INTERVAL_MS} ms .. {MAX_INTERVAL_MS} ms"
        )
    if settings.tick_timeout < 0 or settings.retention < 0 or settings.reconnect_max <= 0:
        raise ConfigError("tick_timeout and retention must be 0 or more, reconnect_max above 0")
    if settings.hook_failure not in HOOK_FAILURE_CHOICES:
        raise ConfigError(
            f"hook_failure: {settings.hook_failure!r} is not one of {', '.join(HOOK_FAILURE_CHOICES)}"
        )
    for name in ("schema", "table"):
        value = getattr(settings, name)
        if not value or "\x00" in value:
            raise ConfigError(f"{name}: must be a non-empty name")
