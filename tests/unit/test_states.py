"""The worker's states are listed once, in C (src/worker_states.h); Python's list is generated from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alive_worker import _states
from alive_worker.cli import metrics, status

ROOT = Path(__file__).resolve().parents[2]


def write_states() -> ModuleType:
    spec = importlib.util.spec_from_file_location("write_states", ROOT / "scripts" / "write_states.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_python_states_are_those_of_the_c_header() -> None:
    script = write_states()
    expected = script.render((ROOT / "src" / "worker_states.h").read_text())
    assert (ROOT / "alive_worker" / "_states.py").read_text() == expected, (
        "alive_worker/_states.py differs from src/worker_states.h: run python3 scripts/write_states.py"
    )


def test_the_header_lists_every_state_the_view_shows() -> None:
    names = [words for _, words, _ in write_states().states((ROOT / "src" / "worker_states.h").read_text())]
    assert len(names) == len(set(names)) == 16
    assert "in the hook" in names and "waiting for synchronous standby" in names


def test_the_command_judges_every_state_and_no_other() -> None:
    assert set(status.STATE_STATUS) == set(_states.STATES)


def test_the_writing_states_are_those_the_metrics_count_as_up() -> None:
    assert metrics.WRITING_STATES == _states.WRITING
