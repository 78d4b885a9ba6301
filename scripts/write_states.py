"""Writes alive_worker/_states.py from the one list of the worker's states, src/worker_states.h.

Usage: python3 scripts/write_states.py [--check]

With --check it writes nothing and exits 1 if the file is not what the header
makes (tests/unit/test_states.py checks the same).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "src" / "worker_states.h"
MODULE = ROOT / "alive_worker" / "_states.py"

_STATE = re.compile(r'STATE\((WORKER_\w+), "([^"]+)", (true|false)\)')


def states(header: str) -> list[tuple[str, str, bool]]:
    """(Python name, words, writing) of each state in the header's list, in its order."""
    found = [
        (name.removeprefix("WORKER_"), words, writing == "true")
        for name, words, writing in _STATE.findall(header)
    ]
    if not found:
        raise ValueError("no STATE(...) line found")
    return found


def render(header: str) -> str:
    """The text of alive_worker/_states.py for the header's text."""
    listed = states(header)
    lines = [
        '"""The worker\'s states, as alive_worker.workers shows them: their words, and which mean that the',
        "worker writes heartbeats.",
        "",
        "Written by scripts/write_states.py from src/worker_states.h, the one list: do not edit here.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
    ]
    lines += [f'{name}: Final = "{words}"' for name, words, _ in listed]
    lines += [
        "",
        "# Every state, in the order of the C enum.",
        "STATES: Final[tuple[str, ...]] = (",
        *[f"    {name}," for name, _, _ in listed],
        ")",
        "# The states in which the worker writes heartbeats.",
        "WRITING: Final[frozenset[str]] = frozenset({" + ", ".join(n for n, _, w in listed if w) + "})",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    wanted = render(HEADER.read_text())
    if sys.argv[1:] == ["--check"]:
        if MODULE.read_text() != wanted:
            sys.exit(f"{MODULE} differs from {HEADER}: run python3 scripts/write_states.py")
        return
    MODULE.write_text(wanted)


if __name__ == "__main__":
    main()
