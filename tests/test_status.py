"""CREATE EXTENSION alive_worker: the status view in each state, start() and stop()."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from conftest import MESSAGE, Cluster, wait_for

COLUMNS = [
    "database", "role", "target_table", "tick_interval", "state", "pid", "started_at",
    "ticks_ok", "ticks_failed", "ticks_skipped", "last_tick_at", "last_ok_at",
    "last_error_sqlstate", "last_error_message", "last_error_at", "next_tick_at",
    "tick_ms_p50", "tick_ms_p99",
    # hooks (issue 12)
    "hook_failures", "last_hook_error", "last_hook_error_at", "hook_ms_p50", "hook_ms_p99",
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
    cluster = make_cluster(setup_sql=["CREATE EXTENSION alive_worker"])
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
    cluster = make_cluster(
        settings={"role": "luca"}, setup_sql=["CREATE EXTENSION alive_worker", "CREATE ROLE luca LOGIN"]
    )
    row = wait_for_state(cluster, "failing")
    assert row["role"] == "luca"
    assert row["last_error_sqlstate"] == "42501"
    assert "cannot create log table public.log_table" in row["last_error_message"]
    assert row["ticks_failed"] >= 1 and row["ticks_ok"] == 0
    assert row["last_error_at"] is not None


def test_worker_waiting_to_connect_is_starting(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"database": "nowhere"}, setup_sql=["CREATE EXTENSION alive_worker"])
    cluster.wait_for_log('FATAL:  database "nowhere" does not exist')
    [row] = workers(cluster)
    assert (row["database"], row["state"], row["pid"]) == ("nowhere", "starting", None)


def test_disabled_worker_says_so(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"crash_limit": "1"}, setup_sql=["CREATE EXTENSION alive_worker"])
    os.kill(cluster.wait_for_worker(), signal.SIGSEGV)
    row = wait_for_state(cluster, "disabled by crash guard")
    assert row["pid"] is not None


def test_stop_and_start_from_sql(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(setup_sql=["CREATE EXTENSION alive_worker"])
    old_pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(2)
    assert cluster.sql("SELECT alive_worker.stop('postgres')") == [(True,)]
    row = wait_for_state(cluster, "stopped")
    assert row["pid"] is None
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


def test_monitoring_roles_read_and_only_superusers_control(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        setup_sql=[
            "CREATE EXTENSION alive_worker",
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
            "CREATE ROLE nobody LOGIN",
        ]
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
    primary = make_cluster(setup_sql=["CREATE EXTENSION alive_worker"])
    primary.wait_for_heartbeats(1)
    standby = make_standby(primary)
    row = wait_for_state(standby, "waiting for recovery to end")
    assert row["pid"] is None
