"""How a runner shows itself to the server's other clients: its lock and its session's name.

A server without the extension has no shared memory of ours and no status
view, and the runner's role may hold nothing but INSERT on its table.  So
the runner publishes its state with what every session has and every role
may read, needing no grant and writing no row:

- **the lock**: while it is connected to a primary, the runner holds the
  session-level advisory lock (LOCK_CLASS, the heartbeat table's oid).  It
  is released by the server when the session ends, however it ends (kill
  -9, a network cut noticed by the server, a crash of the host), so that
  no holder in pg_locks means no runner, and there is no stale claim to
  clean up.  It also keeps a second runner off the same table: one writer,
  one numbering.
- **the session's application_name**: ``alive-worker run: STATE (Nms)``,
  the state and the interval, set when the state changes (not at every tick: it costs a round
  trip).  pg_stat_activity shows application_name to every role.
- **blocked**: a runner whose statement waits for a lock has an ungranted
  row in pg_locks (readable by everyone): ``alive-worker status`` reads
  that, since a blocked session cannot change its own name.

Spoofing: any role may take an advisory lock and name its session so; the
status command therefore shows the holder's role and reads the heartbeats'
age from the table itself where it may (a fresh row is what clients can
write), never from the name alone.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from alive_worker import _states, states

# The advisory lock's first key: "alvw" as an int4, the same on every server.
LOCK_CLASS = 0x616C7677
APPLICATION_PREFIX = "alive-worker run"

# The runner's states: the worker's words (alive_worker/_states.py) where the meaning is the same.
CONNECTING = _states.CONNECTING
SLEEPING = _states.SLEEPING
IN_THE_HOOK = _states.IN_HOOK
WAITING_FOR_RECOVERY = _states.WAITING_FOR_RECOVERY
FAILING = _states.FAILING
LOCKED_OUT = states.RUNNER_LOCKED_OUT
# Read from pg_locks by status, never published by the runner itself.
BLOCKED = _states.BLOCKED_ON_LOCK
STATES = (CONNECTING, SLEEPING, IN_THE_HOOK, WAITING_FOR_RECOVERY, FAILING, LOCKED_OUT)

_NAME = re.compile(rf"^{re.escape(APPLICATION_PREFIX)}: (?P<state>[a-z ]+) \((?P<interval>\d+)ms\)$")


class Published(NamedTuple):
    state: str
    interval_ms: int


def application_name(state: str, interval_ms: int) -> str:
    """The session's name for state (at most 63 bytes, as NAMEDATALEN allows)."""
    assert state in STATES, state
    name = f"{APPLICATION_PREFIX}: {state} ({interval_ms}ms)"
    assert len(name) < 64, name
    return name


def read_application_name(name: str | None) -> Published | None:
    """The state a runner's session name says, or None if it is not a runner's."""
    match = _NAME.match(name or "")
    if not match or match.group("state") not in STATES:
        return None
    return Published(match.group("state"), int(match.group("interval")))
