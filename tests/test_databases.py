"""alive_worker.databases: one worker per database, each on its own."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import psycopg.sql
import pytest
from conftest import MESSAGE, Cluster
from test_status import wait_for_state, workers


def test_one_worker_per_database_and_a_missing_one_harms_no_other(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        settings={"databases": 'first, "Second db", missing'},
        setup_sql=["CREATE DATABASE first", 'CREATE DATABASE "Second db"'],
        extension=True,
    )
    for database in ("first", "Second db"):
        rows = cluster.wait_for_heartbeats(3, dbname=database)
        assert [m for _, m in rows[:3]] == [f"{MESSAGE} {n}" for n in (1, 2, 3)]
    cluster.wait_for_log(
        r'FATAL:  database "missing" does not exist\n.*CONTEXT:  alive_worker connecting to database "missing" \(alive_worker.databases\)'
    )
    states = {row["database"]: row["state"] for row in workers(cluster)}
    assert states["missing"] == "cannot connect"
    assert states["first"] in ("sleeping", "ticking") and states["Second db"] in ("sleeping", "ticking")
    pids = {row["pid"] for row in workers(cluster) if row["pid"]}
    assert len(pids) == 2
    # No log table in the postgres database: it is not listed.
    assert cluster.heartbeats() == []


def test_stopping_one_database_leaves_the_others(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"databases": "one, two"},
        setup_sql=["CREATE DATABASE one", "CREATE DATABASE two"],
        extension=True,
    )
    cluster.wait_for_heartbeats(1, dbname="one")
    cluster.wait_for_heartbeats(1, dbname="two")
    assert cluster.sql("SELECT alive_worker.stop('one')") == [(True,)]
    wait_for_state(cluster, "stopped", "one")
    written = len(cluster.heartbeats(dbname="two"))
    cluster.wait_for_heartbeats(written + 3, dbname="two")


@pytest.mark.parametrize(
    ("value", "complaint"),
    [('a, "b', "List syntax is invalid"), ("a, a", 'Database "a" is listed twice')],
)
def test_invalid_database_list_is_refused(cluster: Cluster, value: str, complaint: str) -> None:
    statement = psycopg.sql.SQL("ALTER SYSTEM SET alive_worker.databases = {}").format(value)
    with cluster.connect() as conn, pytest.raises(psycopg.Error, match=complaint):
        conn.execute(statement)
