"""The alive_worker.* settings: visible, validated, and applied on reload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from conftest import MESSAGE, Cluster

EXPECTED = {
    # name: (default as pg_settings shows it, context, unit)
    "alive_worker.database": ("postgres", "postmaster", None),
    "alive_worker.databases": ("", "postmaster", None),
    "alive_worker.role": ("", "postmaster", None),
    "alive_worker.schema": ("public", "sighup", None),
    "alive_worker.table": ("log_table", "sighup", None),
    "alive_worker.message": (MESSAGE, "sighup", None),
    "alive_worker.interval": ("10000", "sighup", "ms"),
    "alive_worker.hook": ("", "sighup", None),
    "alive_worker.hook_failure": ("log", "sighup", None),
    "alive_worker.hook_memory_limit": ("262144", "sighup", "kB"),
    "alive_worker.tick_timeout": ("0", "sighup", "ms"),
    "alive_worker.probe_role": ("", "sighup", None),
    "alive_worker.probe_interval": ("30000", "sighup", "ms"),
    "alive_worker.probe_timeout": ("5000", "sighup", "ms"),
    "alive_worker.retention": ("0", "sighup", "s"),
    "alive_worker.crash_limit": ("3", "sighup", None),
    "alive_worker.crash_window": ("600", "sighup", "s"),
    "alive_worker.clock_aligned": ("off", "sighup", None),
    "alive_worker.back_to_back": ("off", "sighup", None),
}


def test_settings_are_described_in_pg_settings(cluster: Cluster) -> None:
    rows = cluster.sql(
        "SELECT name, boot_val, context, unit, short_desc FROM pg_settings WHERE name LIKE 'alive_worker.%'"
    )
    found = {name: (boot, context, unit) for name, boot, context, unit, _ in rows}
    assert found == EXPECTED
    assert all(description for *_, description in rows)


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        (
            "interval",
            "5ms",
            # PostgreSQL 18 gives the bounds with their unit: "(10 ms .. 86400000 ms)".
            r'5 ms is outside the valid range for parameter "alive_worker.interval" \(10( ms)? \.\. ',
        ),
        ("interval", "0", r'0 ms is outside the valid range for parameter "alive_worker.interval"'),
        ("interval", "-1s", r'is outside the valid range for parameter "alive_worker.interval"'),
        ("interval", "often", r'invalid value for parameter "alive_worker.interval": "often"'),
        ("interval", "2d", r'is outside the valid range for parameter "alive_worker.interval"'),
        ("table", "", r'invalid value for parameter "alive_worker.table": ""'),
        ("schema", "", r'invalid value for parameter "alive_worker.schema": ""'),
        ("table", "x" * 64, r'invalid value for parameter "alive_worker.table"'),
    ],
)
def test_invalid_values_are_rejected_naming_the_setting(
    cluster: Cluster, name: str, value: str, complaint: str
) -> None:
    with pytest.raises(psycopg.Error, match=complaint):
        cluster.set(**{name: value})


def test_non_superuser_cannot_change_settings(cluster: Cluster) -> None:
    cluster.sql("CREATE ROLE mallory LOGIN")
    with cluster.connect(user="mallory") as conn:
        with pytest.raises(psycopg.errors.CantChangeRuntimeParam):
            conn.execute("SET alive_worker.interval = '1s'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER SYSTEM SET alive_worker.message = 'pwned'")


def test_invalid_value_in_config_file_keeps_the_previous_one(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.wait_for_heartbeats(2)
    cluster.mark_log()
    config = Path(cluster.node.data_dir, "postgresql.conf")
    with config.open("a") as conf:
        conf.write("alive_worker.interval = 0\nalive_worker.table = ''\n")
    cluster.sql("SELECT pg_reload_conf()")
    cluster.wait_for_log(r'0 ms is outside the valid range for parameter "alive_worker.interval"')
    cluster.wait_for_log(r'invalid value for parameter "alive_worker.table": ""')
    assert cluster.sql("SHOW alive_worker.interval") == [("100ms",)]
    before = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(before + 3)


def test_reload_changes_message_interval_and_table(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    pid = cluster.wait_for_worker()
    written = len(cluster.wait_for_heartbeats(2))

    cluster.set(schema="Other Schema", table="Heart Beats ☃", message="beat", interval="300ms")
    table = '"Other Schema"."Heart Beats ☃"'
    rows = cluster.wait_for_heartbeats(4, table=table)
    # The counter belongs to the worker, not the table: it goes on.
    first = int(rows[0][1].split()[-1])
    assert first > written - 1
    assert [m for _, m in rows] == [f"beat {n}" for n in range(first, first + len(rows))]
    gaps = cluster.sql(
        f"SELECT extract(epoch FROM ts - lag(ts) OVER (ORDER BY pk)) FROM {table} ORDER BY pk OFFSET 1"
    )
    assert all(0.2 < float(gap) < 0.6 for (gap,) in gaps), gaps
    assert cluster.worker_pid() == pid, "a reload must not restart the worker"
