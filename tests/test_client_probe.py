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
from collections import Counter
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
    # It writes no row in the heartbeat table, and leaves no large object behind.
    assert probed.sql("SELECT count(*) FROM public.log_table WHERE message = 'alive_worker probe'") == [(0,)]
    assert probed.sql("SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]
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


def hold_the_probe_s_write(cluster: Cluster) -> psycopg.Connection[Any]:
    """A lock that the probe's write (a large object's catalog row) waits for, and the worker's tick does not."""
    conn = cluster.connect()
    conn.autocommit = False
    conn.execute("LOCK TABLE pg_catalog.pg_largeobject_metadata IN ACCESS EXCLUSIVE MODE")
    return conn


def wait_for_the_probe_waiting(cluster: Cluster) -> None:
    wait_for(
        lambda: (
            cluster.sql(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'alive_worker probe' AND wait_event_type = 'Lock'"
            )
            == [(1,)]
        ),
        "the probe's write waiting",
    )


def test_probe_that_does_not_commit_in_time_is_said(probed: Cluster) -> None:
    probed.set(probe_timeout="500ms")
    held = hold_the_probe_s_write(probed)
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
    held.close()
    wait_for_probes_ok_again(probed)


def test_sigterm_ends_a_probe_at_once(probed: Cluster) -> None:
    probed.set(probe_timeout="1min")
    held = hold_the_probe_s_write(probed)
    wait_for_the_probe_waiting(probed)
    started = time.monotonic()
    assert probed.sql("SELECT alive_worker.stop('postgres')") == [(True,)]
    assert time.monotonic() - started < 1.5
    wait_for_state(probed, "stopped")
    held.close()


def test_postmaster_death_during_a_probe_ends_the_worker(probed: Cluster) -> None:
    """End to end: the probe's backend, waiting for a lock, exits with the postmaster too, closing the socket.

    So this cannot tell the probe's own WL_EXIT_ON_PM_DEATH from the lost
    connection (seen passing with it taken out); it proves the worker does
    not outlive its postmaster while a probe waits.
    """
    probed.set(probe_timeout="1min")
    _lock_kept_open = hold_the_probe_s_write(probed)
    wait_for_the_probe_waiting(probed)
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
    # The red team's attack: the probe role's secret read, and its password set.
    "CREATE FUNCTION public.steal() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
    " IF current_user = 'app' THEN INSERT INTO public.loot SELECT s, current_user FROM public.secret;"
    " ALTER ROLE app PASSWORD 'pwned'; END IF;"
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


def probe_lent_nothing(cluster: Cluster) -> None:
    """Probes succeed and the trigger, run as app by a client's INSERT, took nothing meanwhile."""
    ok = the_worker(cluster)["probes_ok"]
    wait_for(lambda: the_worker(cluster)["probes_ok"] >= ok + 3, "three more OK probes")
    assert cluster.sql("SELECT * FROM public.loot") == []
    assert cluster.sql("SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'app'") == [(True,)]
    # What the probe did not run is real: a client's INSERT runs it.
    assert client_can_write(cluster)
    assert cluster.sql("SELECT DISTINCT taken_as FROM public.loot") == [("app",)]


def test_probe_lends_no_right_to_the_table_s_owner(make_cluster: Callable[..., Cluster]) -> None:
    """A lower role owns the table, with a trigger: the probe runs none of it, and is not refused for it."""
    cluster = make_cluster(settings=PROBE, setup_sql=LENDING_SETUP, extension=True)
    probe_lent_nothing(cluster)


def test_superuser_probe_is_refused(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings=PROBE, setup_sql=SETUP, extension=True)
    cluster.set(probe_role=cluster.node.os_ops.username)
    row = wait_for(
        lambda: r if "superuser" in ((r := the_worker(cluster))["probe_error_message"] or "") else None,
        "the superuser's probe to be refused",
    )
    assert row["state"] == "clients cannot write" and row["probe_error_sqlstate"] == "42501"
    wait_for(
        lambda: the_worker(cluster)["probes_failed"] > row["probes_failed"] + 2, "more probes, refused too"
    )
    assert the_worker(cluster)["state"] == "clients cannot write"


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
    probe_lent_nothing(cluster)


# Code of the table that is none of its owner's: the table is the superuser's,
# every expression calls public.peek(), tableowner's function, which she may
# replace at any time and which reads what only the probe role may.
PEEK = [
    *SECRET_AND_LOOT,
    "CREATE FUNCTION public.peek(text) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN"
    " IF current_user = 'app' THEN INSERT INTO public.loot SELECT s, current_user FROM public.secret; END IF;"
    " RETURN true; END$$",
    "ALTER FUNCTION public.peek(text) OWNER TO tableowner",
    # An index expression's function must say IMMUTABLE; it calls peek all the same.
    "CREATE FUNCTION public.peek_immutable(text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS"
    " $$BEGIN PERFORM public.peek($1); RETURN true; END$$",
    "ALTER FUNCTION public.peek_immutable(text) OWNER TO tableowner",
]
TABLE_CODE_OF_A_LOWER_ROLE = {
    "a trigger calling her function": [
        "CREATE TRIGGER steal BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.steal()"
    ],
    "a rule": ["CREATE RULE peek AS ON INSERT TO public.log_table DO ALSO SELECT public.peek(NEW.message)"],
    "a column default": ["ALTER TABLE public.log_table ADD COLUMN seen boolean DEFAULT public.peek('')"],
    "a domain's check": [
        "CREATE DOMAIN public.note AS text CHECK (public.peek(VALUE))",
        "ALTER TABLE public.log_table ALTER COLUMN message TYPE public.note",
    ],
    "an index expression": ["CREATE INDEX ON public.log_table ((public.peek_immutable(message)))"],
    "a row security policy": [
        "ALTER TABLE public.log_table ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY peek ON public.log_table FOR INSERT WITH CHECK (public.peek(message))",
    ],
}


@pytest.mark.parametrize(
    "statements", TABLE_CODE_OF_A_LOWER_ROLE.values(), ids=TABLE_CODE_OF_A_LOWER_ROLE.keys()
)
def test_probe_runs_no_code_of_the_table(make_cluster: Callable[..., Cluster], statements: list[str]) -> None:
    """The probe's write runs none of the table's code: a lower role's function never runs as the probe role."""
    cluster = make_cluster(settings=PROBE, setup_sql=[*SETUP, *PEEK, *statements], extension=True)
    wait_for(lambda: the_worker(cluster)["probes_ok"] >= 3, "three OK probes")
    # The same code run as app by a client's INSERT: the loot is real.
    assert client_can_write(cluster)
    assert cluster.sql("SELECT DISTINCT taken_as FROM public.loot") == [("app",)]
    cluster.sql("TRUNCATE public.loot")
    ok = the_worker(cluster)["probes_ok"]
    wait_for(lambda: the_worker(cluster)["probes_ok"] >= ok + 3, "three more OK probes")
    assert cluster.sql("SELECT * FROM public.loot") == []


def test_a_failing_probe_is_said_in_every_sample(make_cluster: Callable[..., Cluster]) -> None:
    """The red team's sampling (F6): 1000 reads of the view at a 50 ms interval, none OK while the probe fails."""
    cluster = make_cluster(settings={**PROBE, "interval": "50ms"}, setup_sql=SETUP, extension=True)
    wait_for(lambda: the_worker(cluster)["probes_ok"] >= 2, "two OK probes")
    cluster.sql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
    wait_for_probe_failure(cluster, "42501")
    states: Counter[str] = Counter()
    ticks: list[int] = []
    with cluster.connect() as conn:  # a superuser's session: CONNECT is not asked of it
        for _ in range(1000):
            row = conn.execute("SELECT state, ticks_ok FROM alive_worker.workers").fetchone()
            assert row is not None
            states[row[0]] += 1
            ticks.append(row[1])
            time.sleep(0.005)
    assert states == Counter({"clients cannot write": 1000}), states
    # Some 5 s of samples: heartbeats went on meanwhile, each read in flight too, and probes failed.
    assert ticks[-1] - ticks[0] > 20, ticks
    cluster.sql("GRANT CONNECT ON DATABASE postgres TO PUBLIC")
