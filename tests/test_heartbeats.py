"""Heartbeat rows: the original table, consecutive counters, verbatim messages."""

from __future__ import annotations

from conftest import MESSAGE, Cluster, wait_for


def test_rows_arrive_with_consecutive_counters(cluster: Cluster) -> None:
    rows = cluster.wait_for_heartbeats(5)
    numbers = [int(message.removeprefix(f"{MESSAGE} ")) for _, message in rows]
    assert numbers == list(range(1, len(rows) + 1))
    assert all(message == f"{MESSAGE} {n}" for (_, message), n in zip(rows, numbers, strict=True))


def test_timestamps_follow_the_interval(cluster: Cluster) -> None:
    cluster.wait_for_heartbeats(5)
    gaps = cluster.sql(
        "SELECT extract(epoch FROM ts - lag(ts) OVER (ORDER BY pk)) FROM log_table ORDER BY pk OFFSET 1 LIMIT 4"
    )
    # 100 ms apart, allowing for a loaded test machine.
    assert all(0.05 < float(gap) < 0.6 for (gap,) in gaps), gaps


def test_created_table_has_the_original_shape(cluster: Cluster) -> None:
    cluster.wait_for_heartbeats(1)
    columns = cluster.sql(
        """SELECT column_name, data_type, is_nullable, column_default
           FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name = 'log_table' ORDER BY ordinal_position"""
    )
    assert columns == [
        ("pk", "integer", "NO", "nextval('log_table_pk_seq'::regclass)"),
        ("message", "text", "YES", None),
        ("ts", "timestamp without time zone", "YES", "now()"),
    ]
    primary_key = cluster.sql(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
        " WHERE i.indrelid = 'log_table'::regclass AND i.indisprimary"
    )
    assert primary_key == [("pk",)]
    assert 'LOG:  alive_worker created log table public.log_table as role "' in cluster.log()


def test_hostile_message_is_stored_verbatim(cluster: Cluster) -> None:
    hostile = "it's a \\ test'); DROP TABLE log_table;-- $$ ünïcödé ☃"
    cluster.set(message=hostile)
    try:
        rows = wait_for(
            lambda: [m for _, m in cluster.heartbeats() if m.startswith(hostile)][:2] or None,
            "a heartbeat with the hostile message",
        )
        assert rows[0].removeprefix(hostile + " ").isdigit()
        assert cluster.sql("SELECT to_regclass('log_table') IS NOT NULL") == [(True,)]
    finally:
        cluster.reset("message")
