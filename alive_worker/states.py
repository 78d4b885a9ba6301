"""The worker's states, as alive_worker.workers spells them, and what each means: said once for Python.

The words are the C table's (src/worker_states.h, generated into
alive_worker/_states.py); what each means to a monitoring system is said
here, and the command, the metrics, doctor, tail, the rules and the ledger
read both from here only.  tests/unit/test_states.py holds them together.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from alive_worker import _states as words

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
        State(words.SLEEPING, available=True, rating="OK"),
        State(words.TICKING, available=True, rating="OK"),
        State(words.IN_HOOK, available=True, rating="OK"),
        State(words.WAITING_FOR_RECOVERY, available=False, rating="OK", expected_to_write=False),
        State(words.STARTING, available=False, rating="WARNING"),
        State(words.STOPPED, available=False, rating="WARNING"),
        State(words.RESTARTING, available=False, rating="WARNING"),
        State(words.BLOCKED_ON_LOCK, available=False, rating="WARNING", waiting=True),
        State(words.WAITING_FOR_STANDBY, available=False, rating="WARNING", waiting=True),
        State(words.FAILING, available=False, rating="CRITICAL"),
        State(words.DISABLED, available=False, rating="CRITICAL"),
        State(words.CANNOT_CONNECT, available=False, rating="CRITICAL"),
        State(words.NOT_REGISTERED, available=False, rating="CRITICAL"),
        State(words.PROBE_FAILING, available=False, rating="CRITICAL"),
        State(words.BACKING_OFF, available=False, rating="CRITICAL"),
        State(words.CONNECTING, available=False, rating="CRITICAL"),
    )
}

# alive-worker run's own (alive_worker/runner/state.py): another runner writes the table.
RUNNER_LOCKED_OUT = "another runner holds the lock"
RUNNER_ONLY: dict[str, State] = {
    RUNNER_LOCKED_OUT: State(RUNNER_LOCKED_OUT, available=False, rating="WARNING")
}

AVAILABLE = frozenset(word for word, s in STATES.items() if s.available)
WAITING = frozenset(word for word, s in STATES.items() if s.waiting)
NOT_EXPECTED_TO_WRITE = frozenset(word for word, s in STATES.items() if not s.expected_to_write)
CLIENTS_CANNOT_WRITE = words.PROBE_FAILING
FAILING = words.FAILING
STOPPED = words.STOPPED
RESTARTING = words.RESTARTING
DISABLED = words.DISABLED
