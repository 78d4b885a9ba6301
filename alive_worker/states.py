"""The worker's states, as alive_worker.workers spells them, and what each means: said once for Python.

The worker (src/worker_status.c, src/sql_functions.c) writes the words; the
command, the metrics, doctor, tail and the rules read them from here only.
tests/unit/test_states.py holds this list to the C sources' words.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Rating = Literal["OK", "WARNING", "CRITICAL"]


# A NamedTuple, as alive_worker.settings.Settings: dataclasses would import inspect.
class State(NamedTuple):
    word: str
    # Heartbeats commit and nothing this state names stops clients' writes:
    # alive_worker_up is 1, and tail follows the worker's schedule, only then.
    available: bool
    # How alive-worker status rates it (before the heartbeat's age is judged).
    rating: Rating
    # A wait that is a WARNING only once it has lasted an interval.
    waiting: bool = False
    # Not expected to write: a standby's worker, waiting for promotion.
    expected_to_write: bool = True


# Waiting (a lock, the synchronous standbys) is a warning while it lasts; the
# tick timeout turns it into a failed tick.
STATES: dict[str, State] = {
    s.word: s
    for s in (
        State("sleeping", available=True, rating="OK"),
        State("ticking", available=True, rating="OK"),
        State("in the hook", available=True, rating="OK"),
        State("waiting for recovery to end", available=False, rating="OK", expected_to_write=False),
        State("starting", available=False, rating="WARNING"),
        State("stopped", available=False, rating="WARNING"),
        State("restarting", available=False, rating="WARNING"),
        State("blocked on a lock", available=False, rating="WARNING", waiting=True),
        State("waiting for synchronous standby", available=False, rating="WARNING", waiting=True),
        State("failing", available=False, rating="CRITICAL"),
        State("disabled by crash guard", available=False, rating="CRITICAL"),
        State("cannot connect", available=False, rating="CRITICAL"),
        State("cannot register", available=False, rating="CRITICAL"),
        State("clients cannot write", available=False, rating="CRITICAL"),
        State("backing off", available=False, rating="CRITICAL"),
        State("connecting", available=False, rating="CRITICAL"),
    )
}

AVAILABLE = frozenset(word for word, s in STATES.items() if s.available)
WAITING = frozenset(word for word, s in STATES.items() if s.waiting)
NOT_EXPECTED_TO_WRITE = frozenset(word for word, s in STATES.items() if not s.expected_to_write)
CLIENTS_CANNOT_WRITE = "clients cannot write"
FAILING = "failing"
STOPPED = "stopped"
RESTARTING = "restarting"
DISABLED = "disabled by crash guard"
