"""Logical replication of the heartbeat table: a subscriber receives it, and it keeps slots moving."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from conftest import ORIGINAL_TABLE, Cluster, wait_for


def publisher(make_cluster: Callable[..., Cluster], interval: str = "200ms") -> Cluster:
    """A primary with wal_level = logical, whose heartbeat table can be published."""
    return make_cluster(
        settings={"interval": interval},
        setup_sql=["ALTER SYSTEM SET wal_level = logical", ORIGINAL_TABLE],
        extension=True,
    )


def lsn(cluster: Cluster, query: str) -> int:
    """An LSN the query returns, as a number of bytes."""
    [(value,)] = cluster.sql(f"SELECT pg_wal_lsn_diff(({query}), '0/0')::bigint")
    return int(value) if value is not None else 0


def test_a_subscriber_receives_the_heartbeats_as_written(make_cluster: Callable[..., Cluster]) -> None:
    primary = publisher(make_cluster)
    primary.sql("CREATE PUBLICATION heartbeats FOR TABLE public.log_table")
    primary.wait_for_heartbeats(3)
    # The subscriber runs a worker of its own: into another table, since the
    # replicated rows keep the primary's pk.
    subscriber = make_cluster(
        settings={"table": "own_heartbeats"}, setup_sql=[ORIGINAL_TABLE], extension=True
    )
    subscriber.sql(
        f"CREATE SUBSCRIPTION heartbeats CONNECTION 'host={primary.node.host} port={primary.node.port} "
        "dbname=postgres' PUBLICATION heartbeats"
    )
    count = len(primary.heartbeats())
    received = subscriber.wait_for_heartbeats(count + 10)
    assert received == primary.heartbeats()[: len(received)]
    query = "SELECT pk, message, ts FROM log_table WHERE pk <= %s ORDER BY pk"
    assert subscriber.sql(query, [count]) == primary.sql(query, [count])
    assert len(subscriber.heartbeats("public.own_heartbeats")) > 0

    # The lag of the subscriber, from the table it receives.
    [(in_recovery, lag, tick_interval)] = subscriber.sql(
        "SELECT in_recovery, lag, tick_interval FROM alive_worker.lag('public.log_table')"
    )
    assert in_recovery is False
    assert abs(tick_interval.total_seconds() - 0.2) < 0.02
    assert isinstance(lag, timedelta) and lag.total_seconds() < 0.5
    assert "ERROR:  " not in subscriber.log()


def consume_like_debezium(cluster: Cluster, slot: str, publication: str) -> None:
    """Reads the slot's changes and confirms the last commit received, as a CDC client does.

    Such a client acknowledges only positions it has seen changes at: if
    nothing it subscribes to changes, its slot stays where it was.
    """
    rows = cluster.sql(
        "SELECT lsn FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
        "'proto_version', '1', 'publication_names', %s) WHERE substr(data, 1, 1) = 'C'",
        [slot, publication],
    )
    if rows:
        cluster.sql("SELECT pg_replication_slot_advance(%s, %s)", [slot, rows[-1][0]])


def test_heartbeats_in_the_publication_keep_a_cdc_slot_moving(make_cluster: Callable[..., Cluster]) -> None:
    primary = publisher(make_cluster)
    primary.sql("CREATE TABLE orders (id int PRIMARY KEY)")
    # The recipe: the heartbeat table in the publication the client reads.
    primary.sql("CREATE PUBLICATION with_heartbeats FOR TABLE orders, public.log_table")
    primary.sql("CREATE PUBLICATION orders_only FOR TABLE orders")
    for slot in ("with_heartbeats", "orders_only"):
        primary.sql("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
    start = lsn(primary, "SELECT pg_current_wal_lsn()")

    def slot_lsn(slot: str, column: str) -> int:
        return lsn(primary, f"SELECT {column} FROM pg_replication_slots WHERE slot_name = '{slot}'")

    def confirmed_past(position: int) -> bool:
        for slot in ("with_heartbeats", "orders_only"):
            consume_like_debezium(primary, slot, slot)
        return slot_lsn("with_heartbeats", "confirmed_flush_lsn") > position

    # The orders table is idle; only heartbeats are written.  The client of
    # the publication with them confirms each one, and the server releases
    # the WAL behind the slot (restart_lsn follows at the next snapshot of
    # running transactions, which the server logs every 15 s while active).
    wait_for(lambda: confirmed_past(start), "the slot confirmed past the start", timeout=10)
    wait_for(
        lambda: confirmed_past(start) and slot_lsn("with_heartbeats", "restart_lsn") > start,
        "the slot's restart_lsn past the start",
        timeout=60,
    )
    later = lsn(primary, "SELECT pg_current_wal_lsn()")
    wait_for(lambda: confirmed_past(later), "the slot confirmed past a later position", timeout=10)

    # The client of the publication without them saw nothing to confirm: the
    # heartbeats' own WAL piles up behind its slot.
    assert slot_lsn("orders_only", "confirmed_flush_lsn") <= start
    assert slot_lsn("orders_only", "restart_lsn") <= start
    [(retained_with, retained_without)] = primary.sql(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), w.restart_lsn), "
        "       pg_wal_lsn_diff(pg_current_wal_lsn(), o.restart_lsn) "
        "FROM pg_replication_slots w, pg_replication_slots o "
        "WHERE w.slot_name = 'with_heartbeats' AND o.slot_name = 'orders_only'"
    )
    assert retained_with < retained_without
