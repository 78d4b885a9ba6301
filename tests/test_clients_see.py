"""What alive_worker says is what clients see: settings, rows that were not written, slots, counters.

The judge of "can clients write" is a fresh session of an ordinary role, app,
trying an INSERT; the worker runs as its own role, alive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from conftest import ORIGINAL_TABLE, UNHURRIED, Cluster, wait_for
from test_cli import as_json, cli, dsn
from test_status import wait_for_state, workers

SETUP = [
    "CREATE ROLE alive LOGIN",
    "CREATE ROLE app LOGIN",
    ORIGINAL_TABLE,
    "GRANT INSERT ON public.log_table TO alive, app",
    "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO alive, app",
]


def client_can_write(cluster: Cluster) -> bool:
    """Whether a new session of role app can INSERT and commit."""
    try:
        with cluster.connect(user="app") as conn:
            conn.execute("INSERT INTO public.log_table (message) VALUES ('app')")
        return True
    except psycopg.errors.ReadOnlySqlTransaction:
        return False


def the_worker(cluster: Cluster) -> dict[str, Any]:
    return next(w for w in workers(cluster) if w["database"] == "postgres")


def wait_for_ok_ticks(cluster: Cluster, more_than: int) -> dict[str, Any]:
    """The worker's row once it has written more than more_than heartbeats and its last tick was OK."""
    return wait_for(
        lambda: (
            row
            if (row := the_worker(cluster))["ticks_ok"] > more_than
            and row["state"] in ("sleeping", "ticking")
            else None
        ),
        f"more than {more_than} OK ticks",
    )


def restart_worker(cluster: Cluster) -> None:
    """A new worker process, which takes its role's and database's settings when it connects."""
    old_pid = cluster.wait_for_worker()
    cluster.sql("SELECT alive_worker.stop('postgres')")
    cluster.sql("SELECT alive_worker.start('postgres')")
    wait_for(lambda: (pid := cluster.worker_pid()) not in (None, old_pid) and pid, "the new worker")
    wait_for_ok_ticks(cluster, 1)


@pytest.fixture
def clients_cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    cluster = make_cluster(settings={"role": "alive", **UNHURRIED}, setup_sql=SETUP, extension=True)
    cluster.wait_for_heartbeats(2)
    return cluster


def test_database_read_only_is_seen_at_the_next_tick_and_its_reset_too(clients_cluster: Cluster) -> None:
    cluster = clients_cluster
    cluster.sql("ALTER DATABASE postgres SET default_transaction_read_only = on")
    assert not client_can_write(cluster)
    row = wait_for_state(cluster, "failing")
    assert row["last_error_sqlstate"] == "25006"
    assert "read-only transaction" in row["last_error_message"]

    with cluster.connect() as conn:
        # This session took the database's setting too.
        conn.execute("SET default_transaction_read_only = off")
        conn.execute("ALTER DATABASE postgres RESET default_transaction_read_only")
    assert client_can_write(cluster)
    wait_for_ok_ticks(cluster, the_worker(cluster)["ticks_ok"] + 2)


def test_fenced_server_fails_the_worker_whatever_its_own_role_sets(clients_cluster: Cluster) -> None:
    cluster = clients_cluster
    cluster.sql("ALTER ROLE alive SET default_transaction_read_only = off")
    restart_worker(cluster)
    cluster.sql("ALTER SYSTEM SET default_transaction_read_only = on")
    cluster.sql("SELECT pg_reload_conf()")
    wait_for(lambda: not client_can_write(cluster), "clients fenced")
    row = wait_for_state(cluster, "failing")
    assert row["last_error_sqlstate"] == "25006"

    cluster.sql("ALTER SYSTEM RESET default_transaction_read_only")
    cluster.sql("SELECT pg_reload_conf()")
    wait_for(lambda: client_can_write(cluster), "clients unfenced")
    wait_for_ok_ticks(cluster, the_worker(cluster)["ticks_ok"] + 2)


def fence_in_the_file_then_reload_an_invalid_value(cluster: Cluster) -> None:
    path = f"{cluster.node.data_dir}/postgresql.conf"
    with open(path, "a") as file:
        file.write("default_transaction_read_only = on\n")
    cluster.sql("SELECT pg_reload_conf()")
    wait_for_state(cluster, "failing")
    with open(path) as file:
        text = file.read()
    with open(path, "w") as file:  # changed to a value PostgreSQL refuses: it keeps on
        file.write(
            text.replace("default_transaction_read_only = on\n", "default_transaction_read_only = 2\n")
        )


def fence_on_the_command_line_then_reload(cluster: Cluster) -> None:
    cluster.node.stop()
    cluster.node.start(params=["-o", "-c default_transaction_read_only=on"])
    wait_for_state(cluster, "failing")


@pytest.mark.parametrize(
    "fence", [fence_in_the_file_then_reload_an_invalid_value, fence_on_the_command_line_then_reload]
)
def test_server_level_read_only_is_the_postmaster_s_after_a_reload(
    clients_cluster: Cluster, fence: Callable[[Cluster], None]
) -> None:
    """The server's value is what the postmaster keeps, not what the files alone say (the red team's F3)."""
    cluster = clients_cluster
    fence(cluster)
    failed = the_worker(cluster)["ticks_failed"]
    cluster.sql("SELECT pg_reload_conf()")
    assert not client_can_write(cluster)
    # Ticks after the reload: each fails, as a client's INSERT does.
    while (row := the_worker(cluster))["ticks_failed"] < failed + 10:
        assert row["state"] == "failing", row
    assert row["last_error_sqlstate"] == "25006"
    assert not client_can_write(cluster)


def test_worker_commits_no_less_durably_than_the_server(clients_cluster: Cluster) -> None:
    """Its own role's synchronous_commit = local must not let the heartbeat skip the synchronous standby clients wait for.

    (A database's local applies to clients too: tests/test_client_refusals.py.)
    """
    cluster = clients_cluster
    cluster.sql("ALTER ROLE alive SET synchronous_commit = local")
    cluster.sql("ALTER ROLE alive IN DATABASE postgres SET synchronous_commit = local")
    restart_worker(cluster)

    cluster.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    cluster.sql("SELECT pg_reload_conf()")
    wait_for_state(cluster, "waiting for synchronous standby")


@pytest.mark.parametrize(
    ("discarder", "named", "undo"),
    [
        (
            [
                "CREATE FUNCTION public.swallow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
                "CREATE TRIGGER swallow_rows BEFORE INSERT ON public.log_table "
                "FOR EACH ROW EXECUTE FUNCTION public.swallow()",
            ],
            "BEFORE INSERT trigger swallow_rows",
            "DROP TRIGGER swallow_rows ON public.log_table",
        ),
        (
            ["CREATE RULE nothing_here AS ON INSERT TO public.log_table DO INSTEAD NOTHING"],
            "DO INSTEAD rule nothing_here",
            "DROP RULE nothing_here ON public.log_table",
        ),
    ],
    ids=["trigger", "rule"],
)
def test_tick_that_wrote_no_row_failed_and_names_why(
    clients_cluster: Cluster, discarder: list[str], named: str, undo: str
) -> None:
    cluster = clients_cluster
    for statement in discarder:
        cluster.sql(statement)
    row = wait_for_state(cluster, "failing")
    assert named in row["last_error_message"]
    assert "wrote no row" in row["last_error_message"]
    ok = the_worker(cluster)["ticks_ok"]
    wait_for(lambda: the_worker(cluster)["ticks_failed"] > row["ticks_failed"] + 2, "more failed ticks")
    assert the_worker(cluster)["ticks_ok"] == ok
    # Without it, heartbeats again.
    cluster.sql(undo)
    wait_for_ok_ticks(cluster, ok + 2)


def test_workers_without_a_slot_say_so(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"databases": "postgres, one, two, three"},
        setup_sql=["CREATE DATABASE one", "CREATE DATABASE two", "CREATE DATABASE three"],
        conf={"max_worker_processes": "2"},
        extension=True,
    )
    rows = workers(cluster)
    refused = [row for row in rows if row["state"] == "cannot register"]
    # Two slots for four workers (and PostgreSQL's own logical replication launcher).
    assert len(refused) >= 2, rows
    for row in refused:
        assert row["pid"] is None
        assert re.fullmatch(
            r"no free background worker slot: max_worker_processes = 2, at least \d+ needed",
            row["state_detail"],
        ), row["state_detail"]
        needed = int(row["state_detail"].split()[-2])
        assert needed >= 4
    report = as_json(cli("status", "--json", "--dsn", dsn(cluster)))
    assert report["status"] == "CRITICAL"


def test_counters_count_since_this_process_started(clients_cluster: Cluster) -> None:
    cluster = clients_cluster
    before = wait_for_ok_ticks(cluster, 5)
    cluster.sql("SELECT alive_worker.stop('postgres')")
    cluster.sql("SELECT alive_worker.start('postgres')")
    after = wait_for_ok_ticks(cluster, 0)
    assert after["pid"] != before["pid"]
    assert after["ticks_ok"] < before["ticks_ok"]
    assert after["ticks_ok"] <= len(cluster.heartbeats()) - before["ticks_ok"]


def test_deferred_constraint_trigger_is_named(clients_cluster: Cluster) -> None:
    """PostgreSQL fires no deferred trigger in the owner's security-restricted INSERT: the error says which, and why."""
    cluster = clients_cluster
    cluster.sql("CREATE FUNCTION public.later() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'")
    cluster.sql(
        "CREATE CONSTRAINT TRIGGER check_later AFTER INSERT ON public.log_table"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.later()"
    )
    row = wait_for(
        lambda: r if "check_later" in ((r := the_worker(cluster))["last_error_message"] or "") else None,
        "the tick's error to name the trigger",
    )
    assert row["state"] == "failing" and row["last_error_sqlstate"] == "42501"
    assert "deferred constraint trigger check_later cannot fire" in row["last_error_message"], row
    # It stays named, tick after tick.
    failed = row["ticks_failed"]
    wait_for(lambda: the_worker(cluster)["ticks_failed"] > failed + 3, "more failed ticks")
    assert "check_later" in the_worker(cluster)["last_error_message"]
    cluster.sql("DROP TRIGGER check_later ON public.log_table")
    wait_for_ok_ticks(cluster, the_worker(cluster)["ticks_ok"] + 2)
