"""alive_worker.retention: old rows go in bounded batches; the table stays flat."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from conftest import UNHURRIED, Cluster, wait_for
from test_cli import checks, cli, dsn
from test_status import workers

OLD_ROWS = 1_000_000


def test_a_million_old_rows_are_deleted_over_successive_bounded_ticks(
    make_cluster: Callable[..., Cluster],
) -> None:
    # Unhurried: a batch cancelled by a 20 ms tick timeout on a busy machine
    # would count as a failed tick; the batch's own bound is its row count.
    cluster = make_cluster(settings={"interval": "20ms", **UNHURRIED}, extension=True)
    cluster.wait_for_heartbeats(1)
    cluster.sql(
        "INSERT INTO log_table (message, ts) SELECT 'old', now() - interval '2 days'"
        f" FROM generate_series(1, {OLD_ROWS})"
    )
    # The old rows got later pks than the first heartbeats: retention must still find them.
    cluster.set(retention="1d")
    remaining = [OLD_ROWS]

    def old_rows_gone() -> bool:
        remaining.append(cluster.sql("SELECT count(*) FROM log_table WHERE message = 'old'")[0][0])
        return remaining[-1] == 0

    # Counted twice a second: a count of a million rows is a load of its own,
    # which would slow the deletes it waits for.  At most 5,000 rows go per
    # 20 ms tick, so the deletes take over 4 s, several counts.
    wait_for(old_rows_gone, "the old rows to be deleted", timeout=120, every=0.5)
    # Several batches, not one big delete.
    assert len({count for count in remaining if 0 < count < OLD_ROWS}) >= 3, remaining
    [row] = workers(cluster)
    assert row["tick_ms_p99"] < 1000, row
    assert row["ticks_failed"] == 0, row
    gaps = cluster.sql(
        "SELECT max(gap) FROM (SELECT extract(epoch FROM ts - lag(ts) OVER (ORDER BY pk)) AS gap"
        " FROM log_table WHERE message <> 'old') g"
    )
    assert float(gaps[0][0]) < 2.0, "heartbeats kept coming while old rows went"


def test_table_stays_flat_in_a_soak(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"interval": "10ms", "retention": "2s"})
    cluster.node.append_conf(autovacuum_naptime="1s")
    cluster.node.reload()
    cluster.wait_for_heartbeats(1)
    time.sleep(6)
    rows_early = cluster.sql("SELECT count(*), pg_total_relation_size('log_table') FROM log_table")[0]
    time.sleep(10)
    rows_late = cluster.sql("SELECT count(*), pg_total_relation_size('log_table') FROM log_table")[0]
    # Two seconds of heartbeats at 100 a second, plus what a check period lets through.
    assert rows_early[0] < 400 and rows_late[0] < 400, (rows_early, rows_late)
    assert rows_late[1] <= rows_early[1] * 1.5 + 65536, (rows_early, rows_late)


def test_retention_without_delete_privilege_is_reported_and_spares_the_heartbeat(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        # A retention of 100 s looks again every 10 s.
        settings={"role": "luca", "retention": "100s"},
        setup_sql=[
            "CREATE ROLE luca LOGIN",
            "CREATE TABLE log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())",
            "GRANT INSERT, SELECT ON log_table TO luca",
            "GRANT USAGE ON SEQUENCE log_table_pk_seq TO luca",
        ],
    )
    cluster.wait_for_log(
        r"WARNING:  alive_worker.retention cannot delete old heartbeats from public\.log_table: "
        r'permission denied: role "luca" lacks DELETE on table public\.log_table \(SQLSTATE 42501\)'
    )
    cluster.wait_for_heartbeats(5)
    assert cluster.log().count("alive_worker.retention cannot delete") == 1
    # The view and doctor say so too: retention is not silently off.
    cluster.sql("CREATE EXTENSION alive_worker")
    [(problem, ticks_ok)] = cluster.sql("SELECT retention_error, ticks_ok FROM alive_worker.workers")
    assert problem == 'permission denied: role "luca" lacks DELETE on table public.log_table (SQLSTATE 42501)'
    assert ticks_ok >= 5
    found = doctor_checks(cluster)
    assert found["retention postgres"]["status"] == "WARNING"
    assert 'role "luca" lacks DELETE on table public.log_table' in found["retention postgres"]["text"]
    # Once the role may delete, the report clears.
    cluster.sql("GRANT DELETE ON log_table TO luca")
    wait_for(
        lambda: cluster.sql("SELECT retention_error IS NULL FROM alive_worker.workers") == [(True,)],
        "the retention error to clear",
        timeout=30,
    )


def test_retention_that_cannot_be_set_up_is_reported_and_spares_the_heartbeat(
    make_cluster: Callable[..., Cluster],
) -> None:
    # No pk: the batches cannot find the oldest rows.
    cluster = make_cluster(
        settings={"retention": "1h"},
        setup_sql=[
            "CREATE TABLE log_table (message text, ts timestamp DEFAULT now())",
        ],
        extension=True,
    )
    cluster.wait_for_log(r"WARNING:  alive_worker.retention for public\.log_table cannot set up: ")
    wait_for(lambda: cluster.sql("SELECT count(*) FROM log_table")[0][0] >= 3, "heartbeats without a pk")
    [(problem, ticks_failed)] = cluster.sql("SELECT retention_error, ticks_failed FROM alive_worker.workers")
    assert problem.startswith('cannot set up: column "pk" does not exist') and ticks_failed == 0, problem
    assert doctor_checks(cluster)["retention postgres"]["status"] == "WARNING"


def doctor_checks(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return checks(cli("doctor", "--json", "--dsn", dsn(cluster)))


def test_heartbeats_are_written_in_utc(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.node.append_conf(timezone="America/New_York")
    cluster.node.restart()
    cluster.wait_for_heartbeats(2)
    skew = cluster.sql("SELECT extract(epoch FROM (now() AT TIME ZONE 'UTC') - max(ts)) FROM log_table")[0][0]
    assert 0 <= float(skew) < 5, skew
