"""CREATE EXTENSION alive_worker: the status view in each state, start() and stop()."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MESSAGE, ORIGINAL_TABLE, UNHURRIED, Cluster, wait_for

COLUMNS = [
    "database", "role", "target_table", "tick_interval", "state", "pid", "started_at",
    "ticks_ok", "ticks_failed", "ticks_skipped", "last_tick_at", "last_ok_at",
    "last_error_sqlstate", "last_error_message", "last_error_at", "next_tick_at",
    "tick_ms_p50", "tick_ms_p99",
    "state_detail", "state_since", "next_retry_at", "connect_failures", "blocked_by", "last_commit_ms",
    "retention_error",
    # hooks (issue 12)
    "hook_failures", "last_hook_error", "last_hook_error_at", "hook_ms_p50", "hook_ms_p99",
    # trust (issue 19)
    "terminations", "last_terminated_at", "last_terminated_by",
    # clients (issue 21)
    "probe_role", "probes_ok", "probes_failed", "last_probe_at", "last_probe_ok_at", "last_probe_ms",
    "probe_error_sqlstate", "probe_error_message",
    "disk_free_bytes", "disk_size_bytes", "disk_free_where",
    "replication_lag",
]  # fmt: skip


def workers(cluster: Cluster, dbname: str = "postgres") -> list[dict[str, Any]]:
    columns, rows = cluster.query("SELECT * FROM alive_worker.workers ORDER BY database", dbname=dbname)
    assert columns == COLUMNS
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def wait_for_state(cluster: Cluster, state: str, database: str = "postgres") -> dict[str, Any]:
    return wait_for(
        lambda: next(
            (w for w in workers(cluster) if w["database"] == database and w["state"] == state), None
        ),
        f"the worker of {database} to be {state}",
    )


def test_running_worker_is_reported_in_full(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(5)
    [row] = workers(cluster)
    assert row["database"] == "postgres"
    assert row["role"] == cluster.node.os_ops.username
    assert row["target_table"] == "public.log_table"
    assert row["tick_interval"].total_seconds() == 0.1
    assert row["state"] in ("sleeping", "ticking")
    assert row["pid"] == pid
    assert row["ticks_ok"] >= 5 and row["ticks_failed"] == 0
    assert row["started_at"] <= row["last_tick_at"] and row["last_ok_at"] is not None
    assert row["last_error_sqlstate"] is None and row["last_error_message"] is None
    assert row["next_tick_at"] is not None and row["next_tick_at"] > row["last_tick_at"]
    assert 0 < row["tick_ms_p50"] <= row["tick_ms_p99"] < 1000


def test_failing_worker_shows_its_last_error(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"role": "luca"}, setup_sql=["CREATE ROLE luca LOGIN"], extension=True)
    row = wait_for_state(cluster, "failing")
    assert row["role"] == "luca"
    assert row["last_error_sqlstate"] == "42501"
    assert "cannot create log table public.log_table" in row["last_error_message"]
    assert row["ticks_failed"] >= 1 and row["ticks_ok"] == 0
    assert row["last_error_at"] is not None


def test_worker_that_cannot_connect_says_why_and_when_it_retries(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"databases": "postgres, db_missing"}, extension=True)
    cluster.wait_for_log('FATAL:  database "db_missing" does not exist')
    row = wait_for_state(cluster, "cannot connect", "db_missing")
    assert row["pid"] is None
    assert row["last_error_sqlstate"] == "3D000"
    assert row["last_error_message"] == 'database "db_missing" does not exist'
    assert row["state_detail"] == 'database "db_missing" does not exist'
    assert row["connect_failures"] >= 1
    [(now,)] = cluster.sql("SELECT now()")
    assert row["next_retry_at"] is not None and row["next_retry_at"] > row["last_error_at"]
    assert row["state_since"] is not None and row["state_since"] <= now

    # Through its retries (the second after 5 s, the third 5 s later), never merely "starting".
    seen: set[str] = set()

    def failed_twice() -> dict[str, Any] | None:
        row = next(w for w in workers(cluster) if w["database"] == "db_missing")
        seen.add(row["state"])
        return row if row["connect_failures"] >= 2 else None

    second_attempt = wait_for(failed_twice, "a second failed attempt to connect", timeout=30)
    assert "starting" not in seen, seen
    assert seen <= {"cannot connect", "connecting", "backing off"}, seen
    assert second_attempt["state"] in ("cannot connect", "backing off", "connecting")
    # The other database's worker is unaffected.
    assert wait_for_state(cluster, "sleeping", "postgres")["last_error_at"] is None


def test_worker_blocked_on_a_lock_names_the_blocker(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"tick_timeout": "30s"}, extension=True)
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(2)
    with cluster.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE public.log_table IN ACCESS EXCLUSIVE MODE")
        [(locker_pid,)] = locker.execute("SELECT pg_backend_pid()").fetchall()
        cluster.wait_until_waiting(pid, "wait_event_type", "Lock", "the worker to wait for the lock")
        row = wait_for_state(cluster, "blocked on a lock")
        assert row["blocked_by"] == [locker_pid]
        assert f"held by PID {locker_pid}" in row["state_detail"]
        [(now,)] = cluster.sql("SELECT now()")
        assert row["state_since"] is not None and row["last_tick_at"] <= row["state_since"] <= now
        locker.execute("ROLLBACK")
    row = wait_for_state(cluster, "sleeping")
    assert row["blocked_by"] is None and row["state_detail"] is None


@pytest.mark.parametrize("hook_failure", ["log", "fail_tick"])
def test_long_messages_are_cut_on_a_character_boundary(
    make_cluster: Callable[..., Cluster], tmp_path: Path, hook_failure: str
) -> None:
    hook = tmp_path / "hook.py"
    hook.write_text("def hook(tick):\n    raise ValueError('\u00e4' * 300)\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(hook, 0o644)
    # The table made beforehand: one the worker made in a tick that fails
    # goes with the tick, and the next tick's error would be its absence.
    # Unhurried: a host's start that outlasts the 100 ms tick timeout on a busy
    # machine is the first failure, named as such, not the hook's.
    cluster = make_cluster(
        settings={"hook": f"{hook}:hook", "hook_failure": hook_failure, **UNHURRIED},
        setup_sql=[ORIGINAL_TABLE],
        extension=True,
    )
    if hook_failure == "fail_tick":
        row = wait_for_state(cluster, "failing")
        message = row["last_error_message"]
        assert row["state_detail"] == message
    else:
        row = wait_for(
            lambda: next((w for w in workers(cluster) if w["hook_failures"]), None), "a hook failure"
        )
        message = row["last_hook_error"]
    assert message.startswith("ValueError: \u00e4\u00e4") or "\u00e4\u00e4\u00e4" in message
    assert message.endswith("\u00e4") and len(message.encode()) <= 255


def test_disabled_worker_says_so(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"crash_limit": "1"}, extension=True)
    os.kill(cluster.wait_for_worker(), signal.SIGSEGV)
    row = wait_for_state(cluster, "disabled by crash guard")
    assert row["pid"] is not None
    assert row["state_detail"].startswith(
        "the worker crashed 1 times within alive_worker.crash_window (600 s)"
    )


def test_stop_and_start_from_sql(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    old_pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(2)
    with cluster.connect() as conn:
        [(stopper,)] = conn.execute("SELECT pg_backend_pid()").fetchall()
        assert conn.execute("SELECT alive_worker.stop('postgres')").fetchall() == [(True,)]
    row = wait_for_state(cluster, "stopped")
    assert row["pid"] is None
    user = cluster.node.os_ops.username
    assert row["state_detail"] == f'stopped by alive_worker.stop() from PID {stopper} (role "{user}")'
    assert cluster.worker_pid() is None
    assert cluster.sql("SELECT alive_worker.stop('postgres')") == [(False,)]

    assert cluster.sql("SELECT alive_worker.start('postgres')") == [(True,)]
    new_pid = cluster.wait_for_worker()
    assert new_pid != old_pid
    rows = wait_for(
        lambda: r if (r := cluster.heartbeats())[-1][1] == f"{MESSAGE} 2" else None,
        "heartbeats after start()",
    )
    assert rows[-2][1] == f"{MESSAGE} 1"
    assert cluster.sql("SELECT alive_worker.start('postgres')") == [(False,)]
    with pytest.raises(
        psycopg.errors.UndefinedObject, match='no alive worker is configured for database "other"'
    ):
        cluster.sql("SELECT alive_worker.start('other')")

    # A SIGTERM from a session (issue 19) does not stop it for good: it is
    # counted, and the worker started again after the restart delay.
    with cluster.connect() as conn:
        [(terminator,)] = conn.execute("SELECT pg_backend_pid()").fetchall()
        conn.execute("SELECT pg_terminate_backend(%s)", [new_pid])
        row = wait_for_state(cluster, "restarting")
    assert row["terminations"] == 1 and row["last_terminated_by"] == terminator
    assert row["state_detail"].startswith(f"terminated by SIGTERM from PID {terminator}")
    third_pid = wait_for(
        lambda: (pid := cluster.worker_pid()) not in (None, new_pid) and pid, "a new worker", 20
    )
    # A SIGTERM from the OS (the original README's kill -TERM) stops it, and the view says so.
    os.kill(third_pid, signal.SIGTERM)
    row = wait_for_state(cluster, "stopped")
    assert row["state_detail"] == f"stopped by SIGTERM from PID {os.getpid()}, a process of the OS"


def test_monitoring_roles_read_and_only_superusers_control(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        setup_sql=[
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
            "CREATE ROLE nobody LOGIN",
        ],
        extension=True,
    )
    cluster.wait_for_worker()
    with cluster.connect(user="watcher") as conn:
        assert conn.execute("SELECT count(*) FROM alive_worker.workers").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT alive_worker.stop('postgres')")
    with cluster.connect(user="nobody") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM alive_worker.workers")
    assert cluster.worker_pid() is not None


def test_status_is_readable_on_a_standby(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(extension=True)
    primary.wait_for_heartbeats(1)
    standby = make_standby(primary)
    row = wait_for_state(standby, "waiting for recovery to end")
    # Started already, waiting to write once promoted (test_standby.py).
    assert row["pid"] == standby.wait_for_worker()


def test_worker_in_its_hook_says_so(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    hook = tmp_path / "hook.py"
    flag = tmp_path / "release"
    hook.write_text(
        "import pathlib, time\n"
        "def hook(tick):\n"
        f"    while tick.number >= 3 and not pathlib.Path({str(flag)!r}).exists():\n"
        "        time.sleep(0.01)\n"
    )
    os.chmod(tmp_path, 0o755)
    os.chmod(hook, 0o644)
    cluster = make_cluster(settings={"hook": f"{hook}:hook", "tick_timeout": "60s"}, extension=True)
    # Tick 1 is "in the hook" too while it starts the hook host, which imports
    # the hook: the wait is for the third, which the hook holds.
    row = wait_for(
        lambda: next(
            (w for w in workers(cluster) if w["state"] == "in the hook" and w["ticks_ok"] >= 2), None
        ),
        "the worker to be in its third tick's hook",
    )
    assert row["ticks_ok"] == 2
    [(now,)] = cluster.sql("SELECT now()")
    assert row["last_tick_at"] <= row["state_since"] <= now
    flag.touch()
    assert wait_for_state(cluster, "sleeping")["ticks_ok"] >= 3
