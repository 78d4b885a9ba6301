"""The worker's states: their words once in C (src/worker_states.h, generated into
alive_worker/_states.py), their meanings once in Python (alive_worker/states.py), and the README's
table saying the same."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from alive_worker import _states, states
from alive_worker.cli import status

ROOT = Path(__file__).resolve().parents[2]


def write_states() -> ModuleType:
    spec = importlib.util.spec_from_file_location("write_states", ROOT / "scripts" / "write_states.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_states() -> dict[str, str]:
    """The README's table of states: each word (a row may name two) and its rating."""
    found: dict[str, str] = {}
    table = (ROOT / "README.md").read_text().split("| state | meaning | `alive-worker status` |", 1)[1]
    for row in table.splitlines()[2:]:
        if not row.startswith("|"):
            break
        words, _meaning, rating = (cell.strip() for cell in row.strip("|").split("|"))
        for word in re.findall(r"`([^`]+)`", words):
            found[word] = rating.split()[0]
    return found


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


def test_every_state_has_one_meaning_and_the_command_judges_only_those() -> None:
    assert set(states.STATES) == set(_states.STATES)
    assert set(status.STATE_STATUS) == set(_states.STATES) | set(states.RUNNER_ONLY)


def test_the_states_where_clients_write_are_those_c_counts_as_writing() -> None:
    assert states.AVAILABLE == _states.WRITING
    assert {_states.BLOCKED_ON_LOCK, _states.WAITING_FOR_STANDBY} == states.WAITING


def test_the_readme_lists_every_state_with_the_rating_the_command_gives() -> None:
    assert readme_states() == {word: state.rating for word, state in states.STATES.items()}
