"""alive_worker.lag() on a real standby: about zero while streaming, the pause when replay is paused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from conftest import Cluster, streaming_standby, wait_for

LAG_COLUMNS = [
    "in_recovery", "lag", "last_heartbeat_at", "heartbeat_age", "tick_interval", "replay_paused",
    "system_identifier", "upstream", "receiver_status", "source_table", "measured_at", "clock_skew",
    "future_heartbeat_at",
]  # fmt: skip


def lag(cluster: Cluster, table: str | None = None, user: str | None = None) -> dict[str, Any]:
    with cluster.connect(user=user) as conn:
        cursor = conn.execute(
            "SELECT * FROM alive_worker.lag()" if table is None else "SELECT * FROM alive_worker.lag(%s)",
            None if table is None else [table],
        )
        assert [column.name for column in cursor.description or []] == LAG_COLUMNS
        row = cursor.fetchone()
        assert row is not None
        return dict(zip(LAG_COLUMNS, row, strict=True))


def seconds(value: timedelta) -> float:
    return value.total_seconds()


def test_lag_is_about_zero_while_streaming_though_the_newest_heartbeat_is_older(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "1s"}, extension=True)
    standby = streaming_standby(primary, make_standby)
    # Read until the newest heartbeat is more than half an interval old:
    # its age alone would then say the standby is half a second behind.
    readings: list[dict[str, Any]] = []
    reading = wait_for(
        lambda: r if seconds((r := lag(standby))["heartbeat_age"]) > 0.6 else readings.append(r),
        "a reading late in the interval",
    )
    assert reading["in_recovery"] is True and reading["replay_paused"] is False
    assert abs(seconds(reading["tick_interval"]) - 1.0) < 0.05
    assert seconds(reading["lag"]) < 0.2, reading
    assert all(seconds(r["lag"]) < 0.2 for r in readings), readings


def test_lag_grows_with_a_paused_replay_and_agrees_with_the_primary(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "200ms"}, extension=True)
    standby = streaming_standby(primary, make_standby)
    standby.sql("SELECT pg_wal_replay_pause()")
    wait_for(lambda: standby.sql("SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused", "replay paused")
    paused = wait_for(lambda: r if seconds((r := lag(standby))["lag"]) > 1.5 else None, "1.5 s of lag")
    assert paused["replay_paused"] is True
    assert abs(seconds(paused["tick_interval"]) - 0.2) < 0.02

    # The truth, from the primary: the first heartbeat the standby lacks has
    # been waiting since it was written.
    [(first_missing,)] = primary.sql(
        "SELECT min(ts) AT TIME ZONE 'UTC' FROM log_table WHERE ts > %s AT TIME ZONE 'UTC'",
        [paused["last_heartbeat_at"]],
    )
    waiting = seconds(paused["measured_at"] - first_missing)
    assert abs(seconds(paused["lag"]) - waiting) < 0.05, (paused, first_missing)
    # What the age of the newest replayed heartbeat would say is an interval more.
    assert seconds(paused["heartbeat_age"]) > seconds(paused["lag"]) + 0.15

    # The primary's own view of the standby: its replay_lag, and ours, now.
    def both() -> tuple[float, float] | None:
        [(replay_lag,)] = primary.sql("SELECT replay_lag FROM pg_stat_replication")
        ours = seconds(lag(standby)["lag"])
        return (seconds(replay_lag), ours) if replay_lag is not None else None

    replay_lag, ours = wait_for(both, "replay_lag on the primary")
    assert abs(replay_lag - ours) < 0.5, (replay_lag, ours)

    standby.sql("SELECT pg_wal_replay_resume()")
    resumed = wait_for(lambda: r if seconds((r := lag(standby))["lag"]) < 0.1 else None, "lag back to zero")
    assert resumed["replay_paused"] is False


def test_lag_names_the_primary_it_replays(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(extension=True)
    standby = streaming_standby(primary, make_standby)
    [(system_identifier,)] = primary.sql("SELECT system_identifier FROM pg_control_system()")
    reading = wait_for(
        lambda: r if (r := lag(standby))["receiver_status"] == "streaming" else None, "streaming"
    )
    assert reading["system_identifier"] == system_identifier
    assert reading["upstream"].endswith(f":{primary.node.port}")
    assert reading["source_table"] == "public.log_table"

    on_primary = lag(primary)
    assert on_primary["in_recovery"] is False and on_primary["lag"] is None
    assert on_primary["replay_paused"] is None and on_primary["upstream"] is None
    assert on_primary["system_identifier"] == system_identifier
    assert seconds(on_primary["heartbeat_age"]) < 1.0


def test_workers_view_shows_the_lag_on_a_standby_only(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(extension=True)
    standby = streaming_standby(primary, make_standby)
    [(on_primary,)] = primary.sql("SELECT replication_lag FROM alive_worker.workers")
    assert on_primary is None
    [(state, on_standby)] = standby.sql("SELECT state, replication_lag FROM alive_worker.workers")
    assert state == "waiting for recovery to end"
    assert isinstance(on_standby, timedelta) and seconds(on_standby) < 1.0


def test_workers_view_answers_on_a_standby_without_a_heartbeat_table(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(
        settings={"table": "heartbeats", "role": "luca"},
        setup_sql=["CREATE ROLE luca LOGIN"],
        extension=True,
    )
    standby = make_standby(primary)
    [(on_standby,)] = standby.sql("SELECT replication_lag FROM alive_worker.workers")
    assert on_standby is None
    with pytest.raises(
        psycopg.errors.UndefinedTable, match=r"heartbeat table public\.heartbeats does not exist"
    ):
        lag(standby)


def test_monitoring_roles_read_the_lag_without_reading_the_table(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(
        setup_sql=[
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
            "CREATE ROLE nobody LOGIN",
            "CREATE TABLE secrets (pk int, ts timestamptz)",
        ],
        extension=True,
    )
    standby = streaming_standby(primary, make_standby)
    assert seconds(lag(standby, user="watcher")["lag"]) < 1.0
    with standby.connect(user="watcher") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM public.log_table")
    # A table of one's own choosing only if one may read it.
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match=r"permission denied for table public\.secrets"
    ):
        lag(standby, "secrets", user="watcher")
    with standby.connect(user="nobody") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM alive_worker.lag()")


def test_lag_goes_on_growing_when_the_primary_is_gone(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(extension=True)
    standby = streaming_standby(primary, make_standby)
    primary.node.stop(["-m", "immediate"])
    reading = wait_for(lambda: r if seconds((r := lag(standby))["lag"]) > 1.0 else None, "a second of lag")
    assert reading["upstream"] is None and reading["in_recovery"] is True
