"""The worker's states: one list in Python (alive_worker/states.py), the README's table says the same."""

from __future__ import annotations

import re
from pathlib import Path

from alive_worker import states
from alive_worker.cli.status import STATE_STATUS

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_readme_lists_every_state_with_the_rating_the_command_gives() -> None:
    assert readme_states() == {word: state.rating for word, state in states.STATES.items()}


def test_the_command_rates_every_state_and_only_those() -> None:
    assert set(STATE_STATUS) == set(states.STATES)
    assert {"sleeping", "ticking", "in the hook"} == states.AVAILABLE
    assert {"blocked on a lock", "waiting for synchronous standby"} == states.WAITING
