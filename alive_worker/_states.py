"""The worker's states, as alive_worker.workers shows them: their words, and which mean that the
worker writes heartbeats.

Written by scripts/write_states.py from src/worker_states.h, the one list: do not edit here.
"""

from __future__ import annotations

from typing import Final

STARTING: Final = "starting"
SLEEPING: Final = "sleeping"
TICKING: Final = "ticking"
FAILING: Final = "failing"
STOPPED: Final = "stopped"
DISABLED: Final = "disabled by crash guard"
CANNOT_CONNECT: Final = "cannot connect"
BACKING_OFF: Final = "backing off"
CONNECTING: Final = "connecting"
RESTARTING: Final = "restarting"
IN_HOOK: Final = "in the hook"
NOT_REGISTERED: Final = "cannot register"
PROBE_FAILING: Final = "clients cannot write"
WAITING_FOR_RECOVERY: Final = "waiting for recovery to end"
BLOCKED_ON_LOCK: Final = "blocked on a lock"
WAITING_FOR_STANDBY: Final = "waiting for synchronous standby"

# Every state, in the order of the C enum.
STATES: Final[tuple[str, ...]] = (
    STARTING,
    SLEEPING,
    TICKING,
    FAILING,
    STOPPED,
    DISABLED,
    CANNOT_CONNECT,
    BACKING_OFF,
    CONNECTING,
    RESTARTING,
    IN_HOOK,
    NOT_REGISTERED,
    PROBE_FAILING,
    WAITING_FOR_RECOVERY,
    BLOCKED_ON_LOCK,
    WAITING_FOR_STANDBY,
)
# The states in which the worker writes heartbeats.
WRITING: Final[frozenset[str]] = frozenset({SLEEPING, TICKING, IN_HOOK})
