"""The client-path probe: a new session as a client's, whose failure the worker's state says.

The judge of "can clients write" is a fresh session of the probe's own
ordinary role, app; the worker runs as its own role, alive, and its
heartbeats go on committing meanwhile.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from conftest import UNHURRIED, Cluster, wait_for
from test_cli import as_json, cli, dsn
from test_clients_see import SETUP, client_can_write, the_worker
from test_status import wait_for_state

PROBE = {"role": "alive", "probe_role": "app", "probe_interval": "100ms", "probe_timeout": "5s", **UNHURRIED}


@pytest.fixture
def probed(make_cluster: Callable[..., Cluster]) -> Cluster:
    cluster = make_cluster(settings=PROBE, setup_sql=SETUP, conf={"max_connections": "12"}, extension=True)
    wait_for(lambda: the_worker(cluster)["probes_ok"] >= 2, "two OK probes")
    return cluster


def wait_for_probe_failure(cluster: Cluster, sqlstate: str) -> dict[str, Any]:
    row = wait_for_state(cluster, "clients cannot write")
    assert row["probe_error_sqlstate"] == sqlstate, row
    assert row["probe_role"] == "app"
    assert row["state_detail"].startswith('a client\'s new session as role "app" cannot write: ')
    assert row["probe_error_message"] in row["state_detail"]
    return row


def wait_for_probes_ok_again(cluster: Cluster) -> None:
    ok = the_worker(cluster)["probes_ok"]
    wait_for(
        lambda: (row := the_worker(cluster))["probes_ok"] > ok and row["state"] in ("sleeping", "ticking"),
        "the probe to succeed again",
    )


def test_probe_writes_as_a_client_and_is_counted(probed: Cluster) -> None:
    row = the_worker(probed)
    assert row["probe_role"] == "app"
    assert row["probes_failed"] == 0 and row["probe_error_message"] is None
    assert row["last_probe_ok_at"] is not None and row["last_probe_ms"] > 0
    rows = probed.sql("SELECT count(*) FROM public.log_table WHERE message = 'alive_worker probe'")
    assert rows[0][0] >= 2
    sessions = probed.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'alive_worker probe'"
    )
    assert sessions == [(0,)]  # each probe disconnects


def test_revoked_connect_is_said_with_the_servers_message(probed: Cluster) -> None:
    probed.sql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
    row = wait_for_probe_failure(probed, "42501")
    assert 'permission denied for database "postgres"' in row["probe_error_message"]
    # The heartbeat itself goes on: the worker's session is connected already.
    ticks = row["ticks_ok"]
    wait_for(lambda: the_worker(probed)["ticks_ok"] > ticks + 2, "heartbeats meanwhile")
    # What alive-worker status and the metrics say of it.
    report = as_json(cli("status", "--json", "--dsn", dsn(probed)))
    assert report["status"] == "CRITICAL"
    metrics = cli("metrics", "--dsn", dsn(probed)).stdout
    failed = re.search(
        r'^alive_worker_probes_total\{database="postgres",result="failed"\} (\S+)$', metrics, re.M
    )
    assert failed is not None and float(failed.group(1)) >= 1, metrics
    assert report["workers"][0]["state"] == "clients cannot write"
    probed.sql("GRANT CONNECT ON DATABASE postgres TO PUBLIC")
    wait_for_probes_ok_again(probed)
    assert as_json(cli("status", "--json", "--dsn", dsn(probed)))["status"] == "OK"


def test_connection_limit_zero_is_said(probed: Cluster) -> None:
    probed.sql("ALTER DATABASE postgres CONNECTION LIMIT 0")
    row = wait_for_probe_failure(probed, "53300")
    assert 'too many connections for database "postgres"' in row["probe_error_message"]
    probed.sql("ALTER DATABASE postgres CONNECTION LIMIT -1")
    wait_for_probes_ok_again(probed)


def test_max_connections_used_up_is_said(probed: Cluster) -> None:
    idle: list[psycopg.Connection[Any]] = []
    try:
        while True:
            try:
                idle.append(probed.connect(user="app"))
            except psycopg.OperationalError:
                break
        assert not client_can_write_quietly(probed)
        wait_for_probe_failure(probed, "53300")
    finally:
        for conn in idle:
            conn.close()
    wait_for_probes_ok_again(probed)


def client_can_write_quietly(cluster: Cluster) -> bool:
    try:
        return client_can_write(cluster)
    except psycopg.OperationalError:
        return False


def test_role_read_only_seen_by_the_probe_not_the_heartbeat(probed: Cluster) -> None:
    """The probe takes its role's settings, as a client's new session does."""
    probed.sql("ALTER ROLE app SET default_transaction_read_only = on")
    assert not client_can_write(probed)
    row = wait_for_probe_failure(probed, "25006")
    assert "read-only transaction" in row["probe_error_message"]
    probed.sql("ALTER ROLE app RESET default_transaction_read_only")
    wait_for_probes_ok_again(probed)


def test_probe_off_by_default(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings=UNHURRIED, extension=True)
    cluster.wait_for_heartbeats(3)
    row = the_worker(cluster)
    assert row["probe_role"] is None and row["probes_ok"] == 0 and row["last_probe_at"] is None


SLOW_FOR_APP = [
    "CREATE FUNCTION public.slow_for_app() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN IF current_user = 'app' THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END$$",
    "CREATE TRIGGER slow_for_app BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.slow_for_app()",
]


def test_probe_that_does_not_commit_in_time_is_said(probed: Cluster) -> None:
    probed.set(probe_timeout="500ms")
    for statement in SLOW_FOR_APP:
        probed.sql(statement)
    row = wait_for_probe_failure(probed, "57014")
    assert "timed out" in row["probe_error_message"]
    # The probe's statement was cancelled, not left running in the server.
    wait_for(
        lambda: (
            probed.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'alive_worker probe'")
            == [(0,)]
        ),
        "no probe session left",
    )


def test_sigterm_ends_a_probe_at_once(probed: Cluster) -> None:
    probed.set(probe_timeout="1min")
    for statement in SLOW_FOR_APP:
        probed.sql(statement)
    wait_for(
        lambda: (
            probed.sql(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'alive_worker probe' AND wait_event = 'PgSleep'"
            )
            == [(1,)]
        ),
        "the probe's INSERT waiting",
    )
    started = time.monotonic()
    assert probed.sql("SELECT alive_worker.stop('postgres')") == [(True,)]
    assert time.monotonic() - started < 1.5
    wait_for_state(probed, "stopped")


def test_postmaster_death_during_a_probe_ends_the_worker(probed: Cluster) -> None:
    """End to end: the probe's backend, in pg_sleep, exits with the postmaster too, closing the socket.

    So this cannot tell the probe's own WL_EXIT_ON_PM_DEATH from the lost
    connection (seen passing with it taken out); it proves the worker does
    not outlive its postmaster while a probe waits.
    """
    probed.set(probe_timeout="1min")
    for statement in SLOW_FOR_APP:
        probed.sql(statement)
    wait_for(
        lambda: (
            probed.sql(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'alive_worker probe' AND wait_event = 'PgSleep'"
            )
            == [(1,)]
        ),
        "the probe's INSERT waiting",
    )
    pid = probed.wait_for_worker()
    os.kill(probed.node.pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or None, "the orphaned worker to exit", timeout=3)


def test_database_not_accepting_connections_is_said(make_cluster: Callable[..., Cluster]) -> None:
    # The view is read from another database: nobody may connect to postgres meanwhile.
    cluster = make_cluster(
        settings=PROBE,
        setup_sql=[*SETUP, "CREATE DATABASE watch"],
        extension=True,
    )
    with cluster.connect(dbname="watch") as conn:
        conn.execute("CREATE EXTENSION alive_worker")

    def row() -> dict[str, Any]:
        columns, rows = cluster.query("SELECT * FROM alive_worker.workers", dbname="watch")
        return dict(zip(columns, rows[0], strict=True))

    wait_for(lambda: row()["probes_ok"] >= 1, "an OK probe")
    cluster.sql("ALTER DATABASE postgres ALLOW_CONNECTIONS false", dbname="watch")
    failed = wait_for(
        lambda: r if (r := row())["state"] == "clients cannot write" else None, "the probe to fail"
    )
    assert failed["probe_error_sqlstate"] == "55000"
    assert 'database "postgres" is not currently accepting connections' in failed["probe_error_message"]
    cluster.sql("ALTER DATABASE postgres ALLOW_CONNECTIONS true", dbname="watch")
    wait_for(lambda: row()["state"] in ("sleeping", "ticking"), "the probe to succeed again")


# A lower role, tableowner, with a trigger function that reads what only the
# probe role may read, when it runs as the probe role.
SECRET_AND_LOOT = [
    "CREATE ROLE tableowner LOGIN",
    "CREATE TABLE public.secret (s text)",
    "INSERT INTO public.secret VALUES ('payroll')",
    "GRANT SELECT ON public.secret TO app",
    "CREATE TABLE public.loot (s text, taken_as text)",
    "ALTER TABLE public.loot OWNER TO tableowner",
    "GRANT INSERT ON public.loot TO PUBLIC",
    "CREATE FUNCTION public.steal() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
    " IF current_user = 'app' THEN INSERT INTO public.loot SELECT s, current_user FROM public.secret; END IF;"
    " RETURN NEW; END$$",
    "ALTER FUNCTION public.steal() OWNER TO tableowner",
]
# The heartbeat table is tableowner's, with that trigger.
LENDING_SETUP = [
    *SETUP,
    *SECRET_AND_LOOT,
    "ALTER TABLE public.log_table OWNER TO tableowner",
    "CREATE TRIGGER steal BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.steal()",
]


def test_probe_lends_no_right_to_the_table_s_owner(make_cluster: Callable[..., Cluster]) -> None:
    """The table's code runs as the probe role: the probe writes only when its owner has that role's rights."""
    cluster = make_cluster(settings=PROBE, setup_sql=LENDING_SETUP, extension=True)
    row = wait_for_probe_failure(cluster, "42501")
    assert "refused to write" in row["probe_error_message"] and "tableowner" in row["probe_error_message"]
    failed = row["probes_failed"]
    wait_for(lambda: the_worker(cluster)["probes_failed"] > failed + 2, "more probes")
    assert cluster.sql("SELECT * FROM public.loot") == []
    # Once the owner has the probe role's rights, it gains nothing: the probe writes.
    cluster.sql("GRANT app TO tableowner")
    wait_for_probes_ok_again(cluster)


def test_superuser_probe_is_refused(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings=PROBE, setup_sql=SETUP, extension=True)
    cluster.set(probe_role=cluster.node.os_ops.username)
    row = wait_for(
        lambda: r if "superuser" in ((r := the_worker(cluster))["probe_error_message"] or "") else None,
        "the superuser's probe to be refused",
    )
    assert row["state"] == "clients cannot write" and row["probe_error_sqlstate"] == "42501"
    cluster.sql("TRUNCATE public.log_table")
    wait_for(lambda: the_worker(cluster)["probes_failed"] > row["probes_failed"] + 2, "more probes")
    assert cluster.sql("SELECT count(*) FROM public.log_table WHERE message = 'alive_worker probe'") == [(0,)]


# The heartbeat table partitioned; the partition where rows land belongs to
# a lower role, with the same trigger.
PARTITION_LENDING_SETUP = [
    "CREATE ROLE alive LOGIN",
    "CREATE ROLE app LOGIN",
    "CREATE TABLE public.log_table (pk serial, message text, ts timestamp DEFAULT now()) PARTITION BY RANGE (ts)",
    "CREATE TABLE public.log_rows PARTITION OF public.log_table DEFAULT",
    "GRANT INSERT ON public.log_table TO alive, app",
    "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO alive, app",
    *SECRET_AND_LOOT,
    "ALTER TABLE public.log_rows OWNER TO tableowner",
    "CREATE TRIGGER steal BEFORE INSERT ON public.log_rows FOR EACH ROW EXECUTE FUNCTION public.steal()",
]


def test_probe_lends_no_right_to_a_partition_s_owner(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings=PROBE, setup_sql=PARTITION_LENDING_SETUP, extension=True)
    row = wait_for_probe_failure(cluster, "42501")
    assert "refused to write" in row["probe_error_message"] and "tableowner" in row["probe_error_message"]
    failed = row["probes_failed"]
    wait_for(lambda: the_worker(cluster)["probes_failed"] > failed + 2, "more probes")
    assert cluster.sql("SELECT * FROM public.loot") == []
