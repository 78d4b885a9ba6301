"""What a hook's statement leaves in the worker's session is undone after the hook.

The hook's statements run in the worker's own session, which writes every
later heartbeat.  Whatever one of them can leave behind in a session — a
setting of any kind (the role and the session's authorization included), a
session-level advisory lock, a prepared statement, a holdable cursor, a
temporary table — is gone when the hook returns, fails or is ended by the
tick timeout, so that later heartbeats and later ticks of the hook run in the
session the worker started with.

Each case: the hook probes the session at every tick (its probe's answer
written to a file), acts at tick 3, and the probe must give tick 2's answer
again at every tick after it, while the heartbeats go on, on time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Cluster, wait_for, write_hook

HOOK = """
import time
from pathlib import Path
from alive_worker import spi

OUT = Path(__file__).with_name("probes")

def hook(tick):
    [(seen,)] = spi.execute({probe!r})
    with OUT.open("a") as probes:
        probes.write(f"{{tick.number}}|{{seen}}\\n")
    if tick.number == 3:
        spi.execute({act!r})
        {then}
"""

# What the hook does after its statement at tick 3: the hook's three ends.
THEN = {
    "returns": "pass",
    "raises": "raise RuntimeError('after the statement')",
    "outlasts the tick timeout": "time.sleep(60)",
}

# kind -> (the statement, a probe of the session that the statement changes)
KINDS: dict[str, tuple[str, str]] = {
    "TimeZone": ("SET TimeZone = 'Asia/Tokyo'", "SELECT current_setting('TimeZone')"),
    "DateStyle": ("SET DateStyle = 'SQL, DMY'", "SELECT current_setting('DateStyle')"),
    "default_transaction_read_only": (
        "SET default_transaction_read_only = on",
        "SELECT current_setting('default_transaction_read_only')",
    ),
    "synchronous_commit": ("SET synchronous_commit = off", "SELECT current_setting('synchronous_commit')"),
    "lock_timeout": ("SET lock_timeout = '1ms'", "SELECT current_setting('lock_timeout')"),
    "statement_timeout": ("SET statement_timeout = '1h'", "SELECT current_setting('statement_timeout')"),
    "log_min_messages (superuser's)": (
        "SET log_min_messages = panic",
        "SELECT current_setting('log_min_messages')",
    ),
    "search_path": ("SET search_path = public", "SELECT current_setting('search_path')"),
    "a custom setting by set_config": (
        "SELECT set_config('aw_test.flag', 'on', false)",
        "SELECT coalesce(nullif(current_setting('aw_test.flag', true), ''), 'unset')",
    ),
    "role": ("SET ROLE mallory", "SELECT current_user"),
    "session_authorization": (
        "SET SESSION AUTHORIZATION mallory",
        "SELECT session_user || '/' || current_user",
    ),
    "advisory lock": (
        "SELECT pg_advisory_lock(42)",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    ),
    "shared advisory lock": (
        "SELECT pg_advisory_lock_shared(7, 8)",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    ),
    "prepared statement": (
        "PREPARE aw_hook_statement AS SELECT 1",
        "SELECT count(*) FROM pg_prepared_statements",
    ),
    "holdable cursor": (
        "DECLARE aw_hook_cursor CURSOR WITH HOLD FOR SELECT 1",
        "SELECT count(*) FROM pg_cursors WHERE is_holdable",
    ),
    "temporary table": (
        "CREATE TEMPORARY TABLE aw_hook_temp (n int)",
        "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()",
    ),
}

# Every kind after a hook that returns; what outlives a rollback (locks, prepared
# statements) also after a hook that fails and one that the tick timeout ends.
CASES = [(kind, "returns") for kind in KINDS] + [
    (kind, then)
    for kind in ("advisory lock", "prepared statement", "role", "TimeZone")
    for then in ("raises", "outlasts the tick timeout")
]


def probes(directory: Path) -> dict[int, str]:
    path = directory / "probes"
    if not path.exists():
        return {}
    seen = {}
    for line in path.read_text().splitlines():
        number, _, value = line.partition("|")
        seen[int(number)] = value
    return seen


@pytest.mark.parametrize(("kind", "then"), CASES, ids=[f"{kind}, {then}" for kind, then in CASES])
def test_session_state_a_hook_leaves_is_undone(
    make_cluster: Callable[..., Cluster], tmp_path: Path, kind: str, then: str
) -> None:
    act, probe = KINDS[kind]
    hook = write_hook(tmp_path, HOOK.format(probe=probe, act=act, then=THEN[then]))
    cluster = make_cluster(
        settings={"hook": hook, "interval": "200ms", "tick_timeout": "2s"},
        setup_sql=["CREATE ROLE mallory LOGIN"],
    )
    cluster.wait_for_worker()
    seen = wait_for(
        lambda: probes(tmp_path) if max(probes(tmp_path), default=0) >= 8 else None, "tick 8's probe", 40
    )
    baseline = seen[2]
    assert seen[3] == baseline
    assert {number: value for number, value in seen.items() if number > 3} == {
        number: baseline for number in seen if number > 3
    }, f"{kind} left by the hook's tick 3 (tick 2 saw {baseline!r})"
    # The heartbeats went on in the session the worker started with: on time, in the server's time zone.
    ages = cluster.sql("SELECT extract(epoch FROM now()::timestamp - max(ts)) FROM public.log_table")
    assert abs(float(ages[0][0])) < 2
    cluster.sql("CREATE EXTENSION IF NOT EXISTS alive_worker")
    [(failures, error)] = cluster.sql("SELECT hook_failures, last_hook_error FROM alive_worker.status()")
    if then == "returns":
        assert failures == 0, error
    else:
        assert failures >= 1
    # Nothing held for other sessions: the lock a hook took is free.
    assert cluster.sql("SELECT pg_try_advisory_lock(42) AND pg_try_advisory_lock_shared(7, 8)") == [(True,)]
