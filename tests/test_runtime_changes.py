"""The table, its schema and privileges changed under a running worker."""

from __future__ import annotations

from collections.abc import Callable

from conftest import LEAST_PRIVILEGE_SETUP, MESSAGE, Cluster, wait_for


def test_dropped_table_is_recreated_and_the_counter_goes_on(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(3)
    cluster.mark_log()
    cluster.sql("DROP TABLE log_table")
    rows = wait_for(lambda: cluster.heartbeats() or None, "heartbeats in the recreated table")
    cluster.wait_for_log(r"alive_worker created log table public\.log_table")
    assert int(rows[0][1].split()[-1]) > 3
    assert cluster.worker_pid() == pid


def test_dropped_schema_is_recreated(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"schema": "beats"})
    cluster.wait_for_heartbeats(2, table="beats.log_table")
    cluster.sql("DROP SCHEMA beats CASCADE")
    cluster.wait_for_heartbeats(2, table="beats.log_table")


def test_revoked_privilege_is_reported_with_its_sqlstate_and_heals_when_granted(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        settings={"role": "luca"},
        setup_sql=["ALTER SYSTEM SET log_error_verbosity = 'verbose'", *LEAST_PRIVILEGE_SETUP],
    )
    cluster.wait_for_heartbeats(2)
    cluster.mark_log()
    cluster.sql("REVOKE INSERT ON log_table FROM luca")
    cluster.wait_for_log(
        r'ERROR:  42501: permission denied: role "luca" lacks INSERT on table public\.log_table'
    )
    cluster.sql("GRANT INSERT ON log_table TO luca")
    count = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(count + 2)


def test_incompatible_replacement_table_names_the_missing_column(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster()
    cluster.wait_for_heartbeats(2)
    cluster.mark_log()
    cluster.sql("DROP TABLE log_table")
    cluster.sql("CREATE TABLE log_table (pk serial PRIMARY KEY, note text)")
    cluster.wait_for_log(r'ERROR:  alive_worker log table public\.log_table has no column "message"')
    cluster.sql("ALTER TABLE log_table ADD COLUMN message text")
    rows = wait_for(lambda: cluster.heartbeats() or None, "heartbeats once the column exists")
    assert rows[0][1].startswith(MESSAGE)
