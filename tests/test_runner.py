"""alive-worker run: the worker's heartbeat from outside, on servers without our library or extension.

Every server here starts without shared_preload_libraries and without the
extension, as a managed service's would, and the runner connects as luca, a
role holding INSERT on the table and USAGE on its sequence, nothing more
(conftest.LEAST_PRIVILEGE_SETUP), unless a test grants more.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    BIN_DIR,
    LEAST_PRIVILEGE_SETUP,
    MESSAGE,
    ORIGINAL_TABLE,
    Cluster,
    free_port,
    wait_for,
    write_hook,
)

from alive_worker.runner import state

CLI = Path(BIN_DIR) / "alive-worker"
INTERVAL = "100ms"


def dsn(*clusters: Cluster, user: str = "luca", **extra: str) -> str:
    hosts = ",".join(str(c.node.host) for c in clusters)
    ports = ",".join(str(c.node.port) for c in clusters)
    more = "".join(f" {key}={value}" for key, value in extra.items())
    return f"host={hosts} port={ports} dbname=postgres user={user}{more}"


class RunningRunner:
    def __init__(self, process: subprocess.Popen[str], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def sigterm_stops_it_within_100_ms(runner: RunningRunner) -> None:
    started = time.monotonic()
    runner.process.send_signal(signal.SIGTERM)
    code = runner.process.wait(timeout=5)
    took = time.monotonic() - started
    assert code == 0, runner.log()
    assert took < 0.1, f"the runner took {took * 1000:.0f} ms to stop"


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[Callable[..., RunningRunner]]:
    """alive-worker run processes, killed after the test (their stderr shown if it failed)."""
    started: list[RunningRunner] = []

    def start(*args: str, env: dict[str, str] | None = None) -> RunningRunner:
        log_path = tmp_path / f"runner-{len(started)}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ALIVE_WORKER_"))}
        process = subprocess.Popen(
            [str(CLI), "run", "--log-level", "debug", *args],
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("w"),
            text=True,
            env={**clean, **(env or {})},
        )
        started.append(RunningRunner(process, log_path))
        return started[-1]

    yield start
    for runner in started:
        if runner.process.poll() is None:
            runner.process.kill()
            runner.process.wait()
        print(f"---- {runner.log_path} ----\n" + "\n".join(runner.log().splitlines()[-40:]))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    result = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60, env=clean)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


@pytest.fixture
def managed(make_cluster: Callable[..., Cluster]) -> Cluster:
    """A server as a managed service has it: no library, no extension; luca with INSERT only."""
    cluster = make_cluster(setup_sql=LEAST_PRIVILEGE_SETUP, preload=False)
    assert cluster.sql("SHOW shared_preload_libraries") == [("",)]
    assert cluster.sql("SELECT count(*) FROM pg_extension WHERE extname = 'alive_worker'") == [(0,)]
    return cluster


def numbers(rows: list[tuple[int, str]]) -> list[int]:
    prefix = f"{MESSAGE} "
    assert all(message.startswith(prefix) for _, message in rows), rows
    return [int(message.removeprefix(prefix)) for _, message in rows]


def in_commit(sql: str) -> list[str]:
    """Table code that runs sql inside the tick's COMMIT, whatever the runner sends before it: a
    deferred trigger on a second table defers again and queues another, which COMMIT fires too
    (a third red team's chain, which outran the runner's SET CONSTRAINTS ALL IMMEDIATE)."""
    return [
        "CREATE TABLE public.chain (x int)",
        "GRANT INSERT ON public.chain TO PUBLIC",
        "CREATE FUNCTION public.chained() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.x = 1 THEN SET CONSTRAINTS ALL DEFERRED; INSERT INTO public.chain VALUES (2);"
        f" ELSE {sql}; END IF; RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER chained AFTER INSERT ON public.chain DEFERRABLE INITIALLY DEFERRED"
        " FOR EACH ROW EXECUTE FUNCTION public.chained()",
        "CREATE FUNCTION public.start_chain() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO public.chain VALUES (1); RETURN NEW; END $$",
        "CREATE TRIGGER start_chain AFTER INSERT ON public.log_table FOR EACH ROW"
        " EXECUTE FUNCTION public.start_chain()",
    ]


def with_trigger(body: str, when: str = "BEFORE") -> list[str]:
    """LEAST_PRIVILEGE_SETUP, and a row trigger on the heartbeat table (public.table_code) that runs
    body, PL/pgSQL from BEGIN to END, at each INSERT: the table's code of a lower role."""
    return [
        *LEAST_PRIVILEGE_SETUP,
        f"CREATE FUNCTION public.table_code() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$",
        f"CREATE TRIGGER table_code {when} INSERT ON public.log_table FOR EACH ROW"
        " EXECUTE FUNCTION public.table_code()",
    ]


# ---- heartbeats ----


def test_the_runner_writes_the_worker_s_numbered_rows_with_insert_rights_only(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--message", MESSAGE)
    rows = managed.wait_for_heartbeats(10)
    assert numbers(rows)[:10] == list(range(1, 11))
    # On the worker's grid: ten ticks a second, the time a tick takes adding no drift.
    times = [
        t for (t,) in managed.sql("SELECT extract(epoch FROM ts)::float8 FROM public.log_table ORDER BY pk")
    ]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert 0.09 < sum(gaps) / len(gaps) < 0.11, gaps
    assert runner.process.poll() is None
    # The session says who it is, and holds the runner's lock on the table.
    held = managed.sql(
        "SELECT a.usename, a.application_name, l.objid = 'public.log_table'::regclass FROM pg_locks l"
        " JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.granted"
    )
    assert held == [("luca", "alive-worker run: sleeping (100ms)", True)]


def test_a_second_runner_on_the_same_table_waits_for_the_first_one_s_lock(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    first = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--message", MESSAGE)
    managed.wait_for_heartbeats(3)
    second = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--message", MESSAGE)
    wait_for(
        lambda: "another session holds the runner's lock on public.log_table" in second.log(), "the refusal"
    )
    rows = managed.wait_for_heartbeats(len(managed.heartbeats()) + 5)
    # One writer, one numbering: no number twice.
    assert numbers(rows) == list(range(1, len(rows) + 1))
    # Once the first is gone, the second takes over (numbering from its own start, as a new worker's).
    first.process.terminate()
    first.process.wait(timeout=5)
    wait_for(
        lambda: managed.heartbeats()[-1][1] != rows[-1][1] and "sleeping" in second.log(),
        "the second writing",
    )


UNLOCK_IN_A_TRIGGER = [
    "CREATE FUNCTION public.unlock() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_catalog.pg_advisory_unlock_all(); RETURN NEW; END $$",
    "CREATE TRIGGER unlock BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.unlock()",
]


@pytest.mark.parametrize(
    "table_code",
    [UNLOCK_IN_A_TRIGGER, in_commit("PERFORM pg_catalog.pg_advisory_unlock_all()")],
    ids=["in a trigger", "in COMMIT"],
)
def test_a_trigger_that_frees_the_runner_s_lock_lets_no_second_runner_write(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner], table_code: list[str]
) -> None:
    """pg_advisory_unlock_all() in the table's code, at every heartbeat: the runner takes its lock again."""
    cluster = make_cluster(setup_sql=[*LEAST_PRIVILEGE_SETUP, *table_code], preload=False)
    first = start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--message", MESSAGE)
    cluster.wait_for_heartbeats(3)
    # Trying once a second: the lock is free only between the trigger and the first's next
    # statement, in one round trip (loop.tick_frame).
    second = start_runner("--dsn", dsn(cluster), "--interval", "1s", "--message", MESSAGE)
    wait_for(
        lambda: "another session holds the runner's lock on public.log_table" in second.log(), "the refusal"
    )
    time.sleep(3)  # three more tries of the second
    rows = cluster.heartbeats()
    # One writer, one numbering: no number twice.
    assert numbers(rows) == list(range(1, len(rows) + 1))
    assert "alive-worker run: sleeping" not in second.log()
    assert first.process.poll() is None


def test_a_runner_whose_lock_a_trigger_freed_during_its_tick_keeps_it(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    """The lock freed, then the tick held open while a second runner tries to take it: the tick's
    transaction holds the key as well (tick_frame), the first takes its session lock again after
    COMMIT, and the second stays locked out."""
    cluster = make_cluster(
        setup_sql=with_trigger(
            "BEGIN IF NEW.pk = 4 THEN PERFORM pg_catalog.pg_advisory_unlock_all(); PERFORM pg_catalog.pg_sleep(2.5);"
            " END IF; RETURN NEW; END"
        ),
        preload=False,
    )
    first = start_runner(
        "--dsn", dsn(cluster), "--interval", INTERVAL, "--message", MESSAGE, "--tick-timeout", "1min"
    )
    cluster.wait_for_heartbeats(2)
    second = start_runner("--dsn", dsn(cluster), "--interval", "1s", "--message", MESSAGE)
    wait_for(
        lambda: "another session holds the runner's lock on public.log_table" in second.log(),
        "the second runner locked out",
    )
    rows = cluster.wait_for_heartbeats(10)
    assert numbers(rows) == list(range(1, len(rows) + 1))
    assert "alive-worker run: sleeping" not in second.log()
    assert "another session holds the runner's lock" not in first.log()


def test_a_table_made_under_the_name_of_the_runner_s_moves_the_runner_and_its_lock(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    """The lock names the table's oid, the INSERT its name: a table renamed and another made under
    the name would let a second runner lock the new one while the first writes it too."""
    first = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--message", MESSAGE)
    managed.wait_for_heartbeats(3)
    managed.sql(
        "BEGIN; ALTER TABLE public.log_table RENAME TO log_old;"
        " CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now());"
        " GRANT INSERT ON public.log_table TO luca; GRANT USAGE ON SEQUENCE public.log_table_pk_seq1 TO luca;"
        " COMMIT"
    )
    wait_for(
        lambda: "or that name is another table now" in first.log(), "the first runner leaving the old table"
    )
    new_oid = managed.sql("SELECT 'public.log_table'::regclass::oid::int")[0][0]
    wait_for(
        lambda: (
            managed.sql(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                f" WHERE l.locktype = 'advisory' AND l.objid = {new_oid} AND a.usename = 'luca' AND l.granted"
            )
            == [(1,)]
        ),
        "the first runner holding the lock on the new table",
    )
    second = start_runner("--dsn", dsn(managed), "--interval", "1s", "--message", MESSAGE)
    wait_for(
        lambda: "another session holds the runner's lock on public.log_table" in second.log(), "the refusal"
    )
    assert "alive-worker run: sleeping" not in second.log()
    rows = managed.wait_for_heartbeats(3)
    assert numbers(rows) == sorted(numbers(rows)) and len(set(numbers(rows))) == len(rows), rows


# What the table's code can leave in the runner's session besides settings (a third red team's):
# each must be gone before the runner's next statement.
CARRIED = [
    "CREATE ROLE writers",
    "GRANT writers TO luca",
    "GRANT CREATE, USAGE ON SCHEMA public TO luca",
    "CREATE FUNCTION public.carry() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " PERFORM pg_catalog.pg_advisory_lock(424242);"
    " CREATE TEMP TABLE IF NOT EXISTS carried (x int);"
    " PERFORM pg_catalog.set_config('role', 'writers', false);"
    " RETURN NEW; END $$",
    "CREATE TRIGGER carry BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.carry()",
]


def test_no_lock_or_temporary_table_of_the_table_s_code_outlasts_its_tick(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(setup_sql=[*LEAST_PRIVILEGE_SETUP, *CARRIED], preload=False)
    start_runner("--dsn", dsn(cluster), "--interval", "500ms")
    cluster.wait_for_heartbeats(2)
    # Between two ticks (500 ms apart), from outside: what the runner's session holds.
    oid = cluster.sql("SELECT 'public.log_table'::regclass::oid::bigint")[0][0]
    looked = 0
    while looked < 5:
        read = cluster.sql(
            "SELECT a.state, l.classid::bigint, l.objid::bigint FROM pg_locks l JOIN pg_stat_activity a"
            " USING (pid) WHERE l.locktype = 'advisory' AND a.usename = 'luca'"
        )
        if any(session_state != "idle" for session_state, _, _ in read):
            time.sleep(0.05)  # in a tick: the table's code holds its lock until the tick's end
            continue
        looked += 1
        locks = [(classid, objid) for _, classid, objid in read]
        assert (424242, 0) not in [(objid, classid) for classid, objid in locks], locks
        assert all(objid == oid for _, objid in locks), locks
        temporary = cluster.sql(
            "SELECT count(*) FROM pg_class WHERE relname = 'carried' AND relpersistence = 't'"
        )
        assert temporary == [(0,)] or cluster.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'luca' AND state = 'active'"
        ) != [(0,)], "a temporary table of the table's code outlasted its tick"
        time.sleep(0.2)
    assert len(cluster.heartbeats()) >= 3


def test_the_runner_creates_its_table_when_its_role_may_and_says_what_to_grant_when_not(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(
        setup_sql=[
            "CREATE ROLE luca LOGIN",
            "CREATE SCHEMA beats AUTHORIZATION luca",
            "CREATE ROLE nobody LOGIN",
        ],
        preload=False,
    )
    start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--schema", "beats", "--table", "Odd Name")
    rows = cluster.wait_for_heartbeats(3, table='beats."Odd Name"')
    assert numbers(rows)[:3] == [1, 2, 3]
    refused = start_runner("--dsn", dsn(cluster, user="nobody"), "--interval", INTERVAL, "--table", "other")
    wait_for(
        lambda: "cannot create log table public.other" in refused.log(), "the refusal to create the table"
    )
    assert 'grant INSERT on it and USAGE on its sequence to role "nobody"' in refused.log()


def test_the_runner_refuses_to_write_as_a_superuser_whose_rights_the_table_s_code_would_get(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    # mallory owns the database and its public schema, so the table of that name
    # is hers to make (or to drop and make again later): her trigger runs as the
    # runner's role.
    cluster = make_cluster(
        setup_sql=[
            "CREATE ROLE mallory LOGIN",
            "CREATE DATABASE app OWNER mallory",
        ],
        preload=False,
    )
    with cluster.connect("app", user="mallory") as conn:
        conn.execute(
            "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now());"
            " CREATE TABLE public.evidence (who text); GRANT INSERT ON public.evidence TO PUBLIC;"
            " CREATE FUNCTION public.escalate() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN INSERT INTO public.evidence VALUES (current_user);"
            " BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;"
            " RETURN NEW; END $$;"
            " CREATE TRIGGER escalate BEFORE INSERT ON public.log_table"
            " FOR EACH ROW EXECUTE FUNCTION public.escalate()"
        )
    superuser = cluster.node.os_ops.username
    refused = start_runner(
        "--dsn", dsn(cluster, user=superuser).replace("dbname=postgres", "dbname=app"), "--interval", INTERVAL
    )
    wait_for(lambda: "it is a superuser" in refused.log(), "the refusal of a superuser role")
    assert f'refusing to write heartbeats as role "{superuser}"' in refused.log()
    time.sleep(1)  # ten intervals: no tick, and no retry that ticks
    assert refused.process.poll() is None, "a refused role is waited out, as a connection that failed"
    assert cluster.sql("SELECT who FROM public.evidence", dbname="app") == []
    assert cluster.sql("SELECT count(*) FROM public.log_table", dbname="app") == [(0,)]
    assert cluster.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'") == [(False,)]


# Every way a role without rolsuper holds a superuser's power that the runner knows of: one role each.
POWERFUL = {
    "creator": ["CREATE ROLE creator LOGIN CREATEROLE"],
    "shell": ["CREATE ROLE shell LOGIN IN ROLE pg_execute_server_program"],
    "writer": ["CREATE ROLE writer LOGIN IN ROLE pg_write_server_files"],
    "reader": ["CREATE ROLE reader LOGIN IN ROLE pg_read_server_files"],
    "indirect": [
        "CREATE ROLE ops NOLOGIN IN ROLE pg_execute_server_program",
        "CREATE ROLE indirect LOGIN IN ROLE ops",
    ],
    "rds_admin": ["CREATE ROLE rds_superuser NOLOGIN", "CREATE ROLE rds_admin LOGIN IN ROLE rds_superuser"],
}


# Every setting a role may SET is set for the session by the table's code at the third heartbeat,
# to a value other than the one it has: derived from pg_settings on the server under test (a bool
# flipped, an enum's first other value, a number's other bound), so that a setting of a new major
# is covered too.  Strings have no other value to derive: those the runner's statements or its
# state could depend on are named here.  exit_on_error goes last: after it, a SET that fails would
# end the session.  transaction_* are the transaction's, not the session's.
HOSTILE_STRINGS = {
    "application_name": "forged",
    "client_encoding": "LATIN1",
    "DateStyle": "SQL, DMY",
    "search_path": "public",
    "TimeZone": "Pacific/Chatham",
    "default_text_search_config": "pg_catalog.simple",
}
# The red teams' findings among them: each failed ticks, hung them or garbled them once.
NAMED_BY_RED_TEAMS = {
    "default_transaction_read_only",
    "default_transaction_isolation",
    "default_transaction_deferrable",
    "synchronous_commit",
    "client_encoding",
    "row_security",
    "client_min_messages",
}
UNSETTLE_EVERY_SETTING = f"""CREATE FUNCTION public.unsettle() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        s record;
        other text;
        before text;
    BEGIN
        IF NEW.pk = 3 THEN
            FOR s IN SELECT name, setting, vartype, min_val, max_val, enumvals FROM pg_catalog.pg_settings
                     WHERE context = 'user' AND name NOT LIKE 'transaction\\_%'
                     ORDER BY name = 'exit_on_error', name LOOP
                other := CASE
                    {" ".join(f"WHEN s.name = '{name}' THEN '{value}'" for name, value in HOSTILE_STRINGS.items())}
                    WHEN s.vartype = 'bool' THEN CASE s.setting WHEN 'on' THEN 'off' ELSE 'on' END
                    WHEN s.vartype = 'enum' THEN (SELECT v FROM unnest(s.enumvals) v WHERE v <> s.setting LIMIT 1)
                    WHEN s.vartype IN ('integer', 'real') THEN
                        CASE WHEN s.setting = s.min_val THEN s.max_val ELSE s.min_val END
                END;
                CONTINUE WHEN other IS NULL;
                BEGIN
                    before := pg_catalog.current_setting(s.name);
                    PERFORM pg_catalog.set_config(s.name, other, false);
                    IF pg_catalog.current_setting(s.name) <> before THEN
                        INSERT INTO public.unsettled VALUES (s.name);
                    END IF;
                EXCEPTION WHEN OTHERS THEN NULL;  -- not settable now, or not to that: left as it is
                END;
            END LOOP;
        END IF;
        INSERT INTO public.seen SELECT NEW.pk, name, setting FROM pg_catalog.pg_settings WHERE context = 'user';
        RETURN NEW;
    END $$"""


def test_no_setting_the_table_s_code_sets_reaches_the_next_tick(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    """A SET by a trigger lasts the session: read-only would fail every later tick while clients write."""
    cluster = make_cluster(
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            "CREATE TABLE public.seen (pk int, name text, setting text)",
            "CREATE TABLE public.unsettled (name text)",
            "GRANT INSERT ON public.seen, public.unsettled TO luca",
            UNSETTLE_EVERY_SETTING,
            "CREATE TRIGGER unsettle BEFORE INSERT ON public.log_table FOR EACH ROW "
            "EXECUTE FUNCTION public.unsettle()",
        ],
        preload=False,
    )
    # The third tick sets some hundred settings, each in a subtransaction: slow on a loaded machine.
    start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--tick-timeout", "1min")
    rows = cluster.wait_for_heartbeats(8)
    assert numbers(rows)[:8] == list(range(1, 9)), rows
    unsettled = {name for (name,) in cluster.sql("SELECT name FROM public.unsettled")}
    assert unsettled >= NAMED_BY_RED_TEAMS, NAMED_BY_RED_TEAMS - unsettled
    assert len(unsettled) >= 50, unsettled
    seen: dict[int, dict[str, str]] = {}
    for pk, name, setting in cluster.sql("SELECT pk, name, setting FROM public.seen WHERE pk <= 8"):
        seen.setdefault(pk, {})[name] = setting
    # The second tick's as the baseline: the first may run before the runner names its session.
    changed = {name for name in unsettled if seen[3][name] != seen[2][name]}
    assert changed == unsettled, unsettled - changed
    for pk in range(4, 9):
        kept = {name: (seen[2][name], seen[pk][name]) for name in seen[2] if seen[pk][name] != seen[2][name]}
        assert kept == {}, f"heartbeat {pk} ran with the settings of the table's code: {kept}"


@pytest.mark.parametrize(
    "name, value", [("synchronous_commit", "off"), ("default_transaction_read_only", "on")]
)
def test_a_setting_the_table_s_code_gives_the_runner_s_role_is_refused_from_the_next_tick(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner], name: str, value: str
) -> None:
    """The table's code runs as the runner's role, which may ALTER ROLE itself SET ...: every later
    session of that role takes it, and clients' do not (loop.refuse_the_role_s_own_settings); the
    runner sees the change after the tick (loop._SETTINGS_NEW_SESSIONS_TAKE) and connects again."""
    cluster = make_cluster(
        setup_sql=with_trigger(
            f"BEGIN IF NEW.pk = 3 THEN EXECUTE 'ALTER ROLE ' || quote_ident(current_user) || ' SET {name} = {value}';"
            " END IF; RETURN NEW; END"
        ),
        preload=False,
    )
    runner = start_runner("--dsn", dsn(cluster), "--interval", INTERVAL)
    cluster.wait_for_heartbeats(3)
    # A new session of the role would take it: the runner, seeing it changed, connects again.
    wait_for(
        lambda: f'refusing to write heartbeats as role "luca": it has its own {name}' in runner.log(),
        "the refusal",
    )
    assert f"ALTER ROLE luca RESET {name}" in runner.log()
    assert cluster.sql("SELECT count(*) FROM pg_db_role_setting WHERE setrole = 'luca'::regrole") == [(1,)]
    written = len(cluster.heartbeats())
    time.sleep(1)
    assert len(cluster.heartbeats()) == written
    cluster.sql("DROP TRIGGER table_code ON public.log_table")
    cluster.sql(f"ALTER ROLE luca RESET {name}")
    rows = cluster.wait_for_heartbeats(written + 2)
    assert numbers(rows) == list(range(1, len(rows) + 1))


@pytest.mark.parametrize(
    "change, undo, refused",
    [
        (
            "SET default_transaction_read_only = on",
            "RESET default_transaction_read_only",
            "cannot execute INSERT in a read-only transaction",
        ),
        ("CONNECTION LIMIT 0", "CONNECTION LIMIT -1", 'too many connections for database "postgres"'),
    ],
    ids=["read-only", "no connection"],
)
def test_what_stops_new_sessions_of_the_database_stops_the_runner_at_its_next_tick(
    managed: Cluster, start_runner: Callable[..., RunningRunner], change: str, undo: str, refused: str
) -> None:
    """A database's owner (below superuser) may make every new client's session read-only, or refuse
    it (ALTER DATABASE); the runner's session, connected before, took nothing of it
    (loop._SETTINGS_NEW_SESSIONS_TAKE): it connects again, and fares as clients do."""
    import psycopg

    managed.sql("CREATE ROLE dbowner LOGIN")
    managed.sql("ALTER DATABASE postgres OWNER TO dbowner")
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL)
    managed.wait_for_heartbeats(2)
    with psycopg.connect(dsn(managed, user="dbowner"), autocommit=True) as owner:
        owner.execute(f"ALTER DATABASE postgres {change}")
        wait_for(lambda: refused in runner.log(), "the runner failing as clients do")
        assert "connecting again to take them as clients do" in runner.log()
        # As a client's new session fares.
        with (
            pytest.raises(psycopg.Error, match=refused),
            psycopg.connect(dsn(managed), autocommit=True) as client,
        ):
            client.execute("INSERT INTO public.log_table (message) VALUES ('a client')")
        written = len(managed.heartbeats())
        time.sleep(0.5)
        assert len(managed.heartbeats()) == written
        owner.execute(f"ALTER DATABASE postgres {undo}")
    # The failing ticks, or the refused connects, read it too: the runner writes again.
    rows = managed.wait_for_heartbeats(written + 3)
    assert numbers(rows) == list(range(1, len(rows) + 1))


# What a database's owner may change that stops every new client's session from writing or from
# connecting, each after the last: each must read otherwise to the runner (a fifth red team's).
WHAT_STOPS_NEW_SESSIONS = [
    "ALTER DATABASE postgres SET application_name = 'x default_transaction_read_only=on'",
    # The same text, joined with spaces, as the red team's collision had it.
    "ALTER DATABASE postgres SET application_name = 'x'",
    "ALTER DATABASE postgres SET default_transaction_read_only = on",
    "ALTER DATABASE postgres CONNECTION LIMIT 0",
    "ALTER DATABASE postgres ALLOW_CONNECTIONS false",
    "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC",
]


def test_the_text_compared_for_new_sessions_tells_each_change_apart(managed: Cluster) -> None:
    import psycopg

    from alive_worker.runner.loop import _SETTINGS_NEW_SESSIONS_TAKE

    managed.sql("CREATE ROLE dbowner LOGIN")
    managed.sql("ALTER DATABASE postgres OWNER TO dbowner")
    # Read in one session, connected before (new ones are read-only, then refused); changed from
    # another database (a database that takes no connection is not changed from inside).
    owner_elsewhere = dsn(managed, user="dbowner").replace("dbname=postgres", "dbname=template1")
    with (
        psycopg.connect(dsn(managed, user="dbowner"), autocommit=True) as reader,
        psycopg.connect(owner_elsewhere, autocommit=True) as owner,
    ):
        seen = [reader.execute(_SETTINGS_NEW_SESSIONS_TAKE).fetchone()]
        for change in WHAT_STOPS_NEW_SESSIONS:
            owner.execute(change)
            seen.append(reader.execute(_SETTINGS_NEW_SESSIONS_TAKE).fetchone())
    assert len(set(seen)) == len(seen), seen


def test_no_second_runner_writes_while_a_trigger_has_freed_the_first_s_lock_in_its_tick(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    """The tick's transaction holds the runner's key as well (tick_frame): pg_advisory_unlock_all()
    frees only the session's hold, so no other session takes it while the tick is open."""
    cluster = make_cluster(
        setup_sql=with_trigger(
            "BEGIN IF NEW.pk = 3 THEN PERFORM pg_catalog.pg_advisory_unlock_all(); PERFORM pg_catalog.pg_sleep(1);"
            " END IF; RETURN NEW; END"
        ),
        preload=False,
    )
    start_runner(
        "--dsn", dsn(cluster), "--interval", INTERVAL, "--message", "first", "--tick-timeout", "1min"
    )
    wait_for(
        lambda: cluster.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") == [(1,)],
        "the first runner's third tick asleep, its lock freed",
    )
    start_runner("--dsn", dsn(cluster), "--interval", "50ms", "--message", "second")
    time.sleep(2)
    third = cluster.sql("SELECT ts FROM public.log_table WHERE pk = 3 AND message LIKE 'first %'")
    assert third, cluster.sql("SELECT pk, message FROM public.log_table ORDER BY pk")
    # ts is the transaction's start: none of the second's began before the first's third ended.
    early = cluster.sql(
        "SELECT pk, message, ts FROM public.log_table WHERE message LIKE 'second %%' AND ts < %s"
        " + interval '0.95 s'",
        [third[0][0]],
    )
    assert early == [], early


def test_roles_with_a_superuser_s_power_but_not_its_name_are_refused_too(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(
        setup_sql=[
            ORIGINAL_TABLE,
            *(statement for statements in POWERFUL.values() for statement in statements),
            f"GRANT INSERT ON public.log_table TO {', '.join(POWERFUL)}",
            f"GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO {', '.join(POWERFUL)}",
        ],
        preload=False,
    )
    for role in POWERFUL:
        refused = start_runner("--dsn", dsn(cluster, user=role), "--interval", INTERVAL)
        wait_for(
            lambda: f'refusing to write heartbeats as role "{role}"' in refused.log(),  # noqa: B023
            f"the refusal of {role}",
        )
        refused.process.terminate()
        refused.process.wait(10)
    assert cluster.sql("SELECT count(*) FROM public.log_table") == [(0,)]


def test_settings_come_from_the_file_then_the_environment_then_the_flags(
    managed: Cluster, start_runner: Callable[..., RunningRunner], tmp_path: Path
) -> None:
    config = tmp_path / "runner.conf"
    config.write_text(
        "# as in postgresql.conf\nalive_worker.message = 'from the file'\ninterval = 100ms\nretention = 0\n"
    )
    os.chmod(tmp_path, 0o755)
    start_runner(
        "--config",
        str(config),
        "--message",
        "from the flag",
        env={"ALIVE_WORKER_MESSAGE": "from the environment", "ALIVE_WORKER_DSN": dsn(managed)},
    )
    rows = managed.wait_for_heartbeats(2)
    assert rows[0][1] == "from the flag 1"
    bad = cli("run", "--dsn", dsn(managed), "--interval", "soon")
    assert bad.returncode == 3 and "interval: not a time: 'soon'" in bad.stderr


def test_sighup_reads_the_settings_file_again(
    managed: Cluster, start_runner: Callable[..., RunningRunner], tmp_path: Path
) -> None:
    config = tmp_path / "runner.conf"
    config.write_text(f"dsn = '{dsn(managed)}'\ninterval = 100ms\nmessage = 'before'\n")
    os.chmod(tmp_path, 0o755)
    runner = start_runner("--config", str(config))
    managed.wait_for_heartbeats(2)
    config.write_text(f"dsn = '{dsn(managed)}'\ninterval = 100ms\nmessage = 'after'\n")
    runner.process.send_signal(signal.SIGHUP)
    rows = wait_for(
        lambda: r if (r := managed.heartbeats())[-1][1].startswith("after ") else None,
        "rows with the new message",
    )
    # The numbering goes on through a reload, as the worker's does.
    shown = [int(message.split()[-1]) for _, message in rows]
    assert shown == list(range(1, len(shown) + 1))
    assert runner.process.poll() is None


# ---- stopping ----


def test_sigterm_stops_the_runner_within_100_ms_even_while_its_insert_waits_for_a_lock(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--tick-timeout", "1min")
    managed.wait_for_heartbeats(2)
    with managed.connect() as blocker, blocker.transaction():
        blocker.execute("LOCK TABLE public.log_table IN ACCESS EXCLUSIVE MODE")
        wait_for(
            lambda: managed.sql("SELECT count(*) FROM pg_locks l WHERE NOT l.granted")[0][0] > 0,
            "the runner's INSERT waiting for the lock",
        )
        sigterm_stops_it_within_100_ms(runner)
    # Its session is gone with it: nothing holds the runner's lock, nothing waits.
    wait_for(
        lambda: managed.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'luca'") == [(0,)],
        "luca gone",
    )


def test_sigterm_stops_the_runner_within_100_ms_while_it_sleeps(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    runner = start_runner("--dsn", dsn(managed), "--interval", "10s")
    managed.wait_for_heartbeats(1)
    time.sleep(0.3)
    started = time.monotonic()
    runner.process.send_signal(signal.SIGTERM)
    assert runner.process.wait(timeout=5) == 0
    assert time.monotonic() - started < 0.1


# ---- the hook and retention ----

HOOK = """
from alive_worker import spi

def hook(tick):
    spi.execute("INSERT INTO public.notes (number, message) VALUES ($1::int, $2)", str(tick.number), tick.message)
    try:
        with spi.subtransaction():
            spi.execute("SELECT 1 / 0")
    except spi.errors.DivisionByZero as error:
        plan = spi.prepare("INSERT INTO public.notes (number, message) VALUES ($1, $2)", ["int4", "text"])
        plan.execute(str(-tick.number), f"{type(error).__name__} {error.sqlstate} {tick.settings.interval_ms}")
"""


def test_a_hook_runs_in_the_runner_with_spi_on_its_connection_and_errors_by_sqlstate(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner], tmp_path: Path
) -> None:
    cluster = make_cluster(
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            "CREATE TABLE public.notes (number int, message text)",
            "GRANT INSERT ON public.notes TO luca",
        ],
        preload=False,
    )
    (tmp_path / "hooks").mkdir()
    hook = write_hook(tmp_path / "hooks", HOOK)
    start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--hook", hook, "--message", MESSAGE)
    wait_for(lambda: len(cluster.sql("SELECT * FROM public.notes")) >= 6, "the hook's rows")
    notes = cluster.sql("SELECT number, message FROM public.notes ORDER BY abs(number), number DESC")
    assert notes[:2] == [(1, f"{MESSAGE} 1"), (-1, "DivisionByZero 22012 100")]
    # The hook's rows commit with the heartbeat they belong to, in its transaction.
    beats = {n for n in numbers(cluster.heartbeats())}
    assert {number for number, _ in notes if number > 0} <= beats


def test_a_failing_hook_is_logged_and_the_heartbeat_commits(
    managed: Cluster, start_runner: Callable[..., RunningRunner], tmp_path: Path
) -> None:
    (tmp_path / "hooks").mkdir()
    hook = write_hook(tmp_path / "hooks", "def hook(tick):\n    raise ValueError('no luck')\n")
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--hook", hook)
    managed.wait_for_heartbeats(3)
    assert "ValueError: no luck" in runner.log()


def test_retention_deletes_old_heartbeats_from_outside(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            "INSERT INTO public.log_table (message, ts) SELECT 'old ' || i, now() - interval '2 days' FROM generate_series(1, 50) i",
            "GRANT SELECT, DELETE ON public.log_table TO luca",
        ],
        preload=False,
    )
    start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--retention", "1d")
    wait_for(
        lambda: cluster.sql("SELECT count(*) FROM public.log_table WHERE message LIKE 'old %'") == [(0,)],
        "the old heartbeats deleted",
    )
    assert len(cluster.heartbeats()) >= 1


# ---- its state, seen from outside ----


def test_status_tells_a_writing_runner_a_blocked_one_and_no_runner(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--tick-timeout", "1min")
    managed.wait_for_heartbeats(3)
    superuser = dsn(managed, user=managed.node.os_ops.username)
    ok = cli("status", "--runner", "--dsn", superuser)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK: 1 sleeping (alive-worker run on PostgreSQL")
    assert re.search(r"^postgres +sleeping +\d+ +public\.log_table +100 ms", ok.stdout, re.M)
    # Without the extension, status finds the runner without being told, and so do the metrics.
    assert cli("status", "--dsn", superuser).returncode == 0
    metrics = cli("metrics", "--dsn", superuser)
    assert metrics.returncode == 0, metrics.stderr
    assert 'alive_worker_up{database="postgres"} 1.0' in metrics.stdout
    assert re.search(
        r'^alive_worker_last_heartbeat_timestamp_seconds\{database="postgres"\} \S+$', metrics.stdout, re.M
    )

    with managed.connect() as blocker, blocker.transaction():
        blocker.execute("LOCK TABLE public.log_table IN ACCESS EXCLUSIVE MODE")
        blocked = wait_for(
            lambda: r if (r := cli("status", "--runner", "--dsn", superuser)).returncode == 2 else None,
            "status CRITICAL for a runner blocked for 10 intervals",
        )
        assert "blocked on a lock" in blocked.stdout
        # A role that may read nothing of the table tells blocked from absent too.
        as_luca = cli("status", "--runner", "--dsn", dsn(managed))
        assert "blocked on a lock" in as_luca.stdout and as_luca.returncode in (1, 2)
    wait_for(
        lambda: cli("status", "--runner", "--dsn", superuser).returncode == 0, "the runner writing again"
    )

    runner.process.kill()
    runner.process.wait()
    gone = wait_for(
        lambda: r if (r := cli("status", "--runner", "--dsn", superuser)).returncode == 2 else None,
        "status CRITICAL with no runner",
    )
    assert gone.stdout.startswith(
        "CRITICAL: no runner: no alive-worker run session is connected to this database"
    )
    scrape = cli("metrics", "--dsn", superuser)
    assert scrape.returncode == 3 and "alive_worker_scrape_success 0.0" in scrape.stdout
    assert not re.search(r"^alive_worker_up\{", scrape.stdout, re.M)


def test_status_says_a_runner_is_failing_and_why_it_writes_no_more(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL)
    managed.wait_for_heartbeats(2)
    managed.sql("REVOKE INSERT ON public.log_table FROM luca")
    superuser = dsn(managed, user=managed.node.os_ops.username)
    failing = wait_for(
        lambda: r if (r := cli("status", "--runner", "--dsn", superuser)).returncode == 2 else None,
        "status CRITICAL for a failing runner",
    )
    assert failing.stdout.startswith("CRITICAL: 1 failing (alive-worker run"), failing.stdout
    wait_for(
        lambda: "permission denied for table log_table (SQLSTATE 42501)" in runner.log(), "the cause logged"
    )
    managed.sql("GRANT INSERT ON public.log_table TO luca")
    wait_for(
        lambda: cli("status", "--runner", "--dsn", superuser).returncode == 0, "the runner writing again"
    )


def test_the_runner_waits_for_a_server_that_is_down_and_writes_once_it_is_up(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    managed.node.stop()
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--reconnect-max", "200ms")
    wait_for(lambda: runner.log().count("cannot connect") >= 1, "the failed attempts logged")
    time.sleep(1)
    assert runner.process.poll() is None
    managed.node.start()
    rows = managed.wait_for_heartbeats(3)
    assert numbers(rows)[:3] == [1, 2, 3]


def test_the_runner_serves_its_own_metrics(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    port = free_port()
    start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--metrics-listen", f"127.0.0.1:{port}")
    managed.wait_for_heartbeats(3)

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    text = wait_for(scrape, "the runner's /metrics")
    assert 'alive_worker_up{database="postgres",table="public.log_table"} 1.0' in text
    assert 'alive_worker_state{database="postgres",state="sleeping",table="public.log_table"} 1.0' in text
    ok = re.search(
        r'alive_worker_ticks_total\{database="postgres",result="ok",table="public.log_table"\} (\d+)', text
    )
    assert ok and int(ok.group(1)) >= 3


def test_a_primary_that_refuses_writes_is_a_failing_tick_on_the_grid_not_a_standby(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    """25006 (read-only transaction) on a primary: clients cannot write, so status says CRITICAL.

    It was taken for a standby: "waiting for recovery to end", rated OK, and
    the runner looked again at once, without waiting for its next tick (a red
    team counted 428 failed ticks in 3 s)."""
    port = free_port()
    start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--metrics-listen", f"127.0.0.1:{port}")
    managed.wait_for_heartbeats(3)
    managed.sql("ALTER SYSTEM SET default_transaction_read_only = on")
    managed.sql("SELECT pg_reload_conf()")
    superuser = dsn(managed, user=managed.node.os_ops.username)
    failing = wait_for(
        lambda: r if (r := cli("status", "--runner", "--dsn", superuser)).returncode == 2 else None,
        "status CRITICAL for a runner whose primary refuses writes",
    )
    assert "1 failing" in failing.stdout, failing.stdout

    def failed_ticks() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        found = re.search(
            r'alive_worker_ticks_total\{database="postgres",result="failed",table="public.log_table"\} (\S+)',
            text,
        )
        assert found is not None, text
        return int(float(found.group(1)))

    before = failed_ticks()
    time.sleep(2.0)
    # On the grid: about 20 ticks of 100 ms, not hundreds.
    assert failed_ticks() - before <= 30
    managed.sql("ALTER SYSTEM RESET default_transaction_read_only")
    managed.sql("SELECT pg_reload_conf()")
    wait_for(
        lambda: cli("status", "--runner", "--dsn", superuser).returncode == 0, "the runner writing again"
    )


def everywhere_table_code_runs(sql: str) -> dict[str, list[str]]:
    """The places the heartbeat's INSERT and COMMIT run code of the table's, each running sql (a
    PL/pgSQL statement): triggers before and after the row, a column's default, another
    table's deferred trigger (run by COMMIT), and COMMIT after a deferred trigger that defers
    again (in_commit)."""

    def function(name: str, returns: str, body: str) -> str:
        return f"CREATE FUNCTION public.{name}() RETURNS {returns} LANGUAGE plpgsql AS $$ BEGIN {body} END $$"

    trigger_body = f"{sql}; RETURN NEW;"
    return {
        "a BEFORE trigger": [
            function("tc", "trigger", trigger_body),
            "CREATE TRIGGER tc BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.tc()",
        ],
        "an AFTER trigger": [
            function("tc", "trigger", trigger_body),
            "CREATE TRIGGER tc AFTER INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.tc()",
        ],
        "a column default": [
            function("tc", "text", f"{sql}; RETURN 'x';"),
            "ALTER TABLE public.log_table ADD COLUMN tc text DEFAULT public.tc()",
        ],
        # The heartbeat table may have none (heartbeat_table.py): another table's, fired by COMMIT.
        "another table's deferred trigger": [
            "CREATE TABLE public.other (x int)",
            "GRANT INSERT ON public.other TO PUBLIC",
            function("tc", "trigger", trigger_body),
            "CREATE CONSTRAINT TRIGGER tc AFTER INSERT ON public.other DEFERRABLE INITIALLY DEFERRED"
            " FOR EACH ROW EXECUTE FUNCTION public.tc()",
            function("to_other", "trigger", "INSERT INTO public.other VALUES (1); RETURN NEW;"),
            "CREATE TRIGGER to_other AFTER INSERT ON public.log_table FOR EACH ROW"
            " EXECUTE FUNCTION public.to_other()",
        ],
        "COMMIT, after a trigger that defers again": in_commit(sql),
    }


# The table's code choosing how the tick's own commit waits (three red teams', with SET LOCAL, the
# last in COMMIT).
COMMIT_LOCALLY = everywhere_table_code_runs(
    "PERFORM pg_catalog.set_config('synchronous_commit', 'local', true)"
)


@pytest.mark.parametrize(
    "table_code",
    [[], *COMMIT_LOCALLY.values()],
    ids=["no table code", *(f"{place} commits locally" for place in COMMIT_LOCALLY)],
)
def test_a_commit_that_no_synchronous_standby_confirmed_fails_the_tick(
    managed: Cluster, start_runner: Callable[..., RunningRunner], table_code: list[str]
) -> None:
    """The tick timeout cancels the commit's wait, and the server answers COMMIT with a WARNING:
    clients' commits wait there, so the heartbeat is not OK (as the worker says, test_sync_rep.py)."""
    for statement in table_code:
        managed.sql(statement)
    managed.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    managed.sql("SELECT pg_reload_conf()")
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--tick-timeout", "300ms")
    wait_for(
        lambda: (
            "heartbeat not confirmed by a synchronous standby: committed locally only (SQLSTATE 57014)"
            in runner.log()
        ),
        "the unconfirmed commit reported",
    )
    superuser = dsn(managed, user=managed.node.os_ops.username)
    status = cli("status", "--runner", "--dsn", superuser)
    assert status.returncode == 2 and "failing" in status.stdout, status.stdout
    managed.sql("ALTER SYSTEM RESET synchronous_standby_names")
    managed.sql("SELECT pg_reload_conf()")
    wait_for(
        lambda: cli("status", "--runner", "--dsn", superuser).returncode == 0, "the runner writing again"
    )


def test_a_role_that_may_not_write_the_tick_s_witness_is_told_what_to_grant(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    """The witness (loop.tick_frame) is pg_logical_emit_message, which PUBLIC may run unless revoked."""
    from alive_worker.runner.loop import witness_function

    witness = witness_function(int(managed.sql("SHOW server_version_num")[0][0]))
    managed.sql(f"REVOKE EXECUTE ON FUNCTION {witness} FROM PUBLIC")
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL)
    wait_for(lambda: f"GRANT EXECUTE ON FUNCTION {witness} TO luca" in runner.log(), "the grant named")
    assert f'role "luca" may not execute {witness}' in runner.log()
    assert managed.heartbeats() == []
    managed.sql(f"GRANT EXECUTE ON FUNCTION {witness} TO luca")
    rows = managed.wait_for_heartbeats(2)
    assert numbers(rows)[:2] == [1, 2]


# A trigger's flood of WARNINGs, 20,000 at every heartbeat.
NOTICE_FLOOD = [
    "CREATE FUNCTION public.flood() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " FOR i IN 1..20000 LOOP RAISE WARNING 'flood %', i; END LOOP; RETURN NEW; END $$",
    "CREATE TRIGGER flood BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.flood()",
]


def test_the_only_python_libpq_runs_for_a_notice_is_the_receiver_the_signal_handlers_know(
    managed: Cluster,
) -> None:
    """libpq calls its notice receiver from inside its own reading, where a signal's handler that
    closed the connection would leave libpq reading a freed one: the runner's handlers wait while
    the frame they interrupted is the receiver's (loop._inside_libpq), so no other Python may run
    there (client_spi.attach)."""
    import psycopg

    from alive_worker.runner import client_spi

    flood = "DO $$ BEGIN FOR i IN 1..2000 LOOP RAISE WARNING 'flood %', i; END LOOP; END $$"
    with psycopg.connect(dsn(managed), autocommit=True) as conn:
        client_spi.attach(conn)
        # Python functions called while the statement runs; not a generator's resumptions (one
        # for each read of the connection, more for more bytes).
        called: list[Any] = []

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "call" and not frame.f_code.co_flags & inspect.CO_GENERATOR:
                called.append(frame.f_code)

        sys.setprofile(profile)
        try:
            client_spi.execute(flood)
        finally:
            sys.setprofile(None)
    receiver = [code for code in called if code is client_spi.NOTICE_RECEIVER_CODE]
    others = [code.co_qualname for code in called if code is not client_spi.NOTICE_RECEIVER_CODE]
    assert len(receiver) == 2000
    # The statement's own few, before and after libpq's reading.
    assert len(others) < 100, collections.Counter(others).most_common(3)


def test_sigterm_stops_the_runner_within_100_ms_in_a_flood_of_notices(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(setup_sql=[*LEAST_PRIVILEGE_SETUP, *NOTICE_FLOOD], preload=False)
    runner = start_runner("--dsn", dsn(cluster), "--interval", "10ms", "--tick-timeout", "1min")
    rows = cluster.wait_for_heartbeats(3)
    assert numbers(rows)[:3] == [1, 2, 3]
    sigterm_stops_it_within_100_ms(runner)


def test_a_cancel_of_the_witness_s_wait_from_another_session_fails_the_tick(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    """Another session's pg_cancel_backend (a member of pg_signal_backend, or of the runner's role)
    ends the witness's wait for a synchronous standby with a WARNING, and the round trip without
    error: the tick fails as when tick_timeout cancels it (a fourth red team's)."""
    import psycopg

    managed.sql("CREATE ROLE canceller LOGIN IN ROLE pg_signal_backend")
    managed.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    managed.sql("SELECT pg_reload_conf()")
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--tick-timeout", "1min")
    wait_for(lambda: "alive-worker run connected" in runner.log(), "the runner connected")
    with psycopg.connect(dsn(managed, user="canceller"), autocommit=True) as canceller:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            canceller.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = 'luca'")
            time.sleep(0.02)
    log = runner.log()
    assert "a cancel ended the wait" in log, log
    # Not once OK: no client's commit ended meanwhile.
    assert "alive-worker run: sleeping" not in log, log


def test_no_session_takes_the_runner_s_lock_between_its_ticks(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    """After each COMMIT the runner frees the advisory locks the table's code took, and takes its
    own again: any role that may connect took it in between (a fourth red team's, in 2 s)."""
    import psycopg

    # A tick_timeout of its own: the interval's (10 ms) ends ticks, and sessions, on a loaded machine.
    start_runner("--dsn", dsn(managed), "--interval", "10ms", "--tick-timeout", "1min")
    managed.wait_for_heartbeats(3)
    oid = managed.sql("SELECT 'public.log_table'::regclass::oid")[0][0]
    managed.sql("CREATE ROLE thief LOGIN")
    tries = 0
    with psycopg.connect(dsn(managed, user="thief"), autocommit=True) as thief:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            got = thief.execute(
                "SELECT pg_try_advisory_lock(%s, %s::oid::int4)", [state.LOCK_CLASS, oid]
            ).fetchone()
            assert got == (False,), f"the runner's lock taken after {tries} tries"
            tries += 1
    assert tries > 300
    assert len(managed.heartbeats()) > 100


def test_a_tick_whose_commit_may_have_committed_uses_no_number_again(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    """Table code that traps the cancels and outlives the tick's grace: the runner closes the
    connection under a round trip with COMMIT in it, and the server commits that heartbeat when
    the code ends (a fourth red team's): its number is not used again."""
    cluster = make_cluster(
        setup_sql=with_trigger(
            """DECLARE t0 timestamptz := clock_timestamp();
               BEGIN
                 IF NEW.pk = 2 THEN
                   PERFORM set_config('client_connection_check_interval', '0', true);
                   WHILE clock_timestamp() < t0 + interval '2.5 s' LOOP
                     BEGIN PERFORM pg_sleep(0.05); EXCEPTION WHEN query_canceled THEN NULL; END;
                   END LOOP;
                 END IF;
                 RETURN NEW;
               END""",
            when="AFTER",
        ),
        preload=False,
    )
    runner = start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--tick-timeout", "300ms")
    wait_for(lambda: "heartbeat 2 may have committed" in runner.log(), "the unknown outcome said")
    rows = cluster.wait_for_heartbeats(6)
    found = numbers(rows)
    assert len(found) == len(set(found)), found
    assert found[:2] == [1, 2], found  # the second committed after all, its session gone


# ---- standbys ----


def test_the_runner_waits_on_a_standby_and_writes_once_it_is_promoted(
    managed: Cluster, make_standby: Callable[[Cluster], Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    managed.sql("SELECT pg_switch_wal()")
    standby = make_standby(managed)
    runner = start_runner("--dsn", dsn(standby), "--interval", INTERVAL)
    wait_for(
        lambda: (
            standby.sql("SELECT application_name FROM pg_stat_activity WHERE usename = 'luca'")
            == [("alive-worker run: waiting for recovery to end (100ms)",)]
        ),
        "the runner waiting on the standby",
    )
    time.sleep(0.5)
    assert managed.heartbeats() == [] and standby.heartbeats() == []
    status = cli("status", "--dsn", dsn(standby, user=standby.node.os_ops.username))
    assert status.returncode == 0 and "waiting for recovery to end" in status.stdout
    managed.node.stop()
    standby.node.promote()
    rows = standby.wait_for_heartbeats(3)
    assert numbers(rows)[:3] == [1, 2, 3], runner.log()


def test_the_runner_follows_a_promoted_standby_through_a_multi_host_dsn(
    managed: Cluster, make_standby: Callable[[Cluster], Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    standby = make_standby(managed)
    runner = start_runner(
        "--dsn",
        dsn(managed, standby, target_session_attrs="read-write"),
        "--interval",
        INTERVAL,
        "--message",
        MESSAGE,
    )
    before = len(managed.wait_for_heartbeats(5))
    wait_for(lambda: len(standby.heartbeats()) >= before, "the heartbeats replayed on the standby")
    managed.node.stop(["-m", "immediate"])
    standby.node.promote()
    rows = wait_for(
        lambda: r if len(r := standby.heartbeats()) >= before + 5 else None,
        "heartbeats on the promoted standby",
        30,
    )
    assert runner.process.poll() is None
    # One runner, one numbering, on through the switch (a tick lost with the old primary at most).
    after = numbers(rows)
    assert after[-1] > after[before - 1]
    assert sorted(set(after[before:])) == after[before:]


# ---- lag and report, read from the table itself ----


def test_lag_and_report_read_a_server_written_by_the_runner(
    managed: Cluster, make_standby: Callable[[Cluster], Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL)
    managed.wait_for_heartbeats(5)
    standby = make_standby(managed)
    wait_for(lambda: len(standby.heartbeats()) >= 5, "heartbeats replayed on the standby")
    on_standby = dsn(standby, user=standby.node.os_ops.username)
    lag = cli("lag", "--dsn", on_standby, "--table", "public.log_table", "--warn", "5", "--crit", "10")
    assert lag.returncode == 0, lag.stdout + lag.stderr
    assert re.match(r"OK: lag \S+ s?\S*, standby", lag.stdout), lag.stdout
    # A role that may not read the table is told what to grant, not given a number.
    refused = cli("lag", "--dsn", dsn(standby), "--table", "public.log_table")
    assert refused.returncode == 3
    assert 'GRANT SELECT ON public.log_table TO "luca";' in refused.stdout + refused.stderr

    # Two seconds without heartbeats: the runner stopped (SIGSTOP), then resumed.
    runner.process.send_signal(signal.SIGSTOP)
    time.sleep(2)
    runner.process.send_signal(signal.SIGCONT)
    managed.wait_for_heartbeats(len(managed.heartbeats()) + 5)
    on_primary = dsn(managed, user=managed.node.os_ops.username)
    # No --interval: the runner's session publishes it.
    report = cli("report", "--dsn", on_primary, "--since", "5min", "--gap", "5", "--format", "json")
    assert report.stdout.startswith("{"), report.stdout + report.stderr
    found = json.loads(report.stdout)
    lengths = [outage["length"] for outage in found["outages"]]
    assert len(lengths) == 1 and 1.5 <= lengths[0] <= 3, found["outages"]


# ---- a table whose owner is below the command's role ----

# Code a planner folds when it plans a read of the table, as the reader: a
# partial index's IMMUTABLE predicate (an index expression, an extended
# statistic or a CHECK constraint under constraint_exclusion reach the same
# folding).  The command reads no table whose owner is below it and not itself.
TRAP_SETUP = [
    "CREATE ROLE mallory LOGIN",
    "CREATE SCHEMA trap AUTHORIZATION mallory",
    "SET ROLE mallory",
    "CREATE TABLE trap.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())",
    "INSERT INTO trap.log_table (message) VALUES ('STILL ALIVE and counting! 1')",
    """CREATE FUNCTION trap.payload() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
       BEGIN
         IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
           ALTER ROLE mallory SUPERUSER;
         END IF;
         RETURN true;
       END $$""",
    "CREATE FUNCTION trap.folded() RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT trap.payload()'",
    "CREATE INDEX ON trap.log_table (pk) WHERE trap.folded()",
    "RESET ROLE",
]


def test_no_subcommand_lends_the_superuser_to_the_owner_of_the_table_it_reads(
    make_cluster: Callable[..., Cluster],
) -> None:
    # One statement list, so that SET ROLE holds for all of it: mallory makes her own objects.
    cluster = make_cluster(setup_sql=[";\n".join(TRAP_SETUP)], preload=False)
    assert cluster.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'") == [(False,)]
    assert cluster.sql("SELECT tableowner FROM pg_tables WHERE schemaname = 'trap'") == [("mallory",)]
    superuser = dsn(cluster, user="postgres")
    with cluster.connect(user="mallory") as claim:
        # A runner's claim anyone may make: its session name and its lock on the table.
        claim.execute("SET application_name = 'alive-worker run: sleeping (100ms)'")
        claim.execute("SELECT pg_advisory_lock(x'616C7677'::int, 'trap.log_table'::regclass::oid::int)")
        for args in (
            ["status", "--dsn", superuser],
            ["status", "--runner", "--dsn", superuser],
            ["lag", "--table", "trap.log_table", "--dsn", superuser],
            ["report", "--table", "trap.log_table", "--dsn", superuser],
            ["metrics", "--dsn", superuser],
        ):
            result = cli(*args)
            assert cluster.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'") == [(False,)], (
                args,
                result.stdout,
                result.stderr,
            )
            if args[0] == "status":
                # Only the session's claim is known: never OK on a name alone.
                assert result.returncode != 0, result.stdout


def test_what_a_database_owner_or_any_role_sets_moves_no_reading_of_a_runner_s_table(
    managed: Cluster, start_runner: Callable[..., RunningRunner]
) -> None:
    # The red team's three: a superuser's table in a schema the database's
    # owner owns (who may rename it under a read), the database's TimeZone
    # (which moved every reading of ts by hours), and a claim by a role that
    # may not write the table (whose session name set the interval judged).
    superuser = dsn(managed, user=managed.node.os_ops.username)
    managed.sql("CREATE ROLE mallory LOGIN")
    managed.sql("CREATE ROLE eve LOGIN")
    managed.sql("CREATE DATABASE app OWNER mallory")
    managed.sql(ORIGINAL_TABLE, dbname="app")
    managed.sql("INSERT INTO public.log_table (message) VALUES ('STILL ALIVE and counting! 1')", dbname="app")
    refused = cli(
        "lag", "--table", "public.log_table", "--dsn", superuser.replace("dbname=postgres", "dbname=app")
    )
    assert "cannot read heartbeat table public.log_table safely" in refused.stdout + refused.stderr, refused
    assert "as its schema is" in refused.stdout + refused.stderr

    # The database's TimeZone five hours behind UTC, for the runner's session and the command's.
    managed.sql("ALTER DATABASE postgres SET TimeZone = 'Etc/GMT+5'")
    runner = start_runner("--dsn", dsn(managed), "--interval", INTERVAL, "--message", MESSAGE)
    managed.wait_for_heartbeats(5)
    # ts is written in UTC whatever the server's or the database's TimeZone.
    written = managed.sql("SELECT ts FROM public.log_table ORDER BY pk DESC LIMIT 1")[0][0]
    now_utc = managed.sql("SELECT now() AT TIME ZONE 'UTC'")[0][0]
    assert abs((now_utc - written).total_seconds()) < 5, (written, now_utc)
    runner.process.terminate()
    runner.process.wait(timeout=10)
    time.sleep(2)  # twenty intervals without a heartbeat
    with managed.connect(user="eve") as claim:
        claim.execute("SET application_name = 'alive-worker run: sleeping (86400000ms)'")
        claim.execute("SELECT pg_advisory_lock(x'616C7677'::int, 'public.log_table'::regclass::oid::int)")
        status = cli("status", "--runner", "--json", "--dsn", superuser)
        assert status.returncode == 2, status.stdout
        assert "its role may not write public.log_table" in status.stdout, status.stdout
    # A session named as a runner waiting for recovery, on a primary, without the lock: anyone's claim.
    with managed.connect(user="eve") as claim:
        claim.execute(f"SET application_name = '{state.application_name(state.WAITING_FOR_RECOVERY, 1000)}'")
        waiting = cli("status", "--runner", "--dsn", superuser)
        assert waiting.returncode == 2, waiting.stdout
        assert re.search(r"^postgres +failing ", waiting.stdout, re.M), waiting.stdout
    with managed.connect(user="eve") as claim:
        claim.execute("SET application_name = 'alive-worker run: sleeping (86400000ms)'")
        claim.execute("SELECT pg_advisory_lock(x'616C7677'::int, 'public.log_table'::regclass::oid::int)")
        # The newest heartbeat's age as the clock says (the runner stopped some 2 s ago), not 5 h off.
        lag = cli("lag", "--table", "public.log_table", "--dsn", superuser)
        age = re.search(r"heartbeat_age=([0-9.]+)s", lag.stdout)
        assert age is not None and 1 < float(age.group(1)) < 60, lag.stdout


# ---- what the table's code can do to the runner's session ----

# A trigger of the table's owner, run as the runner's role in its session: it
# lifts the session's timeouts (committed with each heartbeat, so lasting past
# the tick), then, at the fourth row, sleeps, trapping the first cancel.
HOSTILE_TRIGGER = [
    """CREATE FUNCTION public.stall() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         PERFORM pg_catalog.set_config('statement_timeout', '0', false);
         PERFORM pg_catalog.set_config('lock_timeout', '0', false);
         PERFORM pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false);
         IF NEW.pk = 4 THEN
           BEGIN
             PERFORM pg_catalog.pg_sleep(60);
           EXCEPTION WHEN query_canceled THEN
             PERFORM pg_catalog.pg_sleep(60);
           END;
         END IF;
         RETURN NEW;
       END $$""",
    "CREATE TRIGGER stall BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.stall()",
]


def sleeping_in_the_trigger(cluster: Cluster) -> bool:
    rows = cluster.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'luca' AND wait_event = 'PgSleep'"
    )
    return rows == [(1,)]


def test_a_trigger_that_lifts_the_timeouts_and_sleeps_fails_the_tick_at_tick_timeout(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(setup_sql=[*LEAST_PRIVILEGE_SETUP, *HOSTILE_TRIGGER], preload=False)
    runner = start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--tick-timeout", "500ms")
    cluster.wait_for_heartbeats(3)
    wait_for(lambda: sleeping_in_the_trigger(cluster), "the fourth INSERT sleeping in the trigger")
    slept_from = time.monotonic()
    # The settings the trigger committed hold for no later tick: the tick's own statement_timeout
    # (then the runner's cancel, then closing the connection) ends it.
    wait_for(lambda: "SQLSTATE 57014" in runner.log(), "the tick failed by its timeout", 5)
    wait_for(lambda: not sleeping_in_the_trigger(cluster), "no statement left sleeping", 5)
    assert time.monotonic() - slept_from < 0.5 + 1.0 + 1.0, runner.log()
    assert runner.process.poll() is None
    # It goes on writing, the lifted timeouts gone with that tick's transaction.
    assert numbers(cluster.wait_for_heartbeats(5))[:5] == [1, 2, 3, 4, 5]


def test_sigterm_ends_the_session_and_frees_the_lock_while_a_trigger_sleeps(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(setup_sql=[*LEAST_PRIVILEGE_SETUP, *HOSTILE_TRIGGER], preload=False)
    first = start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--tick-timeout", "1min")
    cluster.wait_for_heartbeats(3)
    wait_for(lambda: sleeping_in_the_trigger(cluster), "the fourth INSERT sleeping in the trigger")
    started = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=5) == 0
    assert time.monotonic() - started < 1.0, "SIGTERM took a second or more"
    # The server's session goes with it, and the lock: a second runner takes over at once.
    second = start_runner("--dsn", dsn(cluster), "--interval", INTERVAL)
    wait_for(
        lambda: "sleeping" in second.log(),
        "the second runner writing",
        2.5,
    )


def test_a_tick_refused_by_the_table_is_logged_rolled_back_counted_and_reported(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            """CREATE FUNCTION public.refuse_third() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF NEW.pk = 3 THEN RAISE EXCEPTION 'no third row' USING HINT = 'by design'; END IF;
                 RETURN NEW;
               END $$""",
            "CREATE TRIGGER refuse_third BEFORE INSERT ON public.log_table FOR EACH ROW "
            "EXECUTE FUNCTION public.refuse_third()",
            "ALTER TABLE public.log_table ADD CHECK (message NOT LIKE '% 5')",
        ],
        preload=False,
    )
    port = free_port()
    runner = start_runner(
        "--dsn",
        dsn(cluster),
        "--interval",
        INTERVAL,
        "--message",
        MESSAGE,
        "--metrics-listen",
        f"127.0.0.1:{port}",
    )
    superuser = dsn(cluster, user=cluster.node.os_ops.username)
    # The fifth heartbeat is refused by the CHECK at every try: the runner is failing, and says so.
    wait_for(lambda: "(SQLSTATE 23514)" in runner.log(), "the CHECK's refusal logged")
    failing = wait_for(
        lambda: r if "1 failing" in (r := cli("status", "--runner", "--dsn", superuser)).stdout else None,
        "status CRITICAL while the CHECK refuses every tick",
    )
    assert failing.stdout.startswith("CRITICAL: 1 failing (alive-worker run"), failing.stdout
    log = runner.log()
    assert "no third row (SQLSTATE P0001); hint: by design" in log
    assert 'violates check constraint "log_table_message_check" (SQLSTATE 23514)' in log
    # Rolled back: no row of a failed tick, the numbering without a gap.
    rows = cluster.sql("SELECT pk, message FROM public.log_table ORDER BY pk")
    assert 3 not in [pk for pk, _ in rows]
    assert numbers(rows) == [1, 2, 3, 4]

    def failed_ticks() -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        found = re.search(r'alive_worker_ticks_total\{[^}]*result="failed"[^}]*\} (\d+)', text)
        return int(found.group(1)) if found and int(found.group(1)) >= 2 else None

    assert wait_for(failed_ticks, "the failed ticks counted") >= 2


def test_the_owner_warning_names_the_runner_s_role_which_the_table_s_code_runs_as(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            "CREATE ROLE mallory LOGIN",
            "ALTER TABLE public.log_table OWNER TO mallory",
        ],
        preload=False,
    )
    runner = start_runner("--dsn", dsn(cluster), "--interval", INTERVAL)
    cluster.wait_for_heartbeats(2)
    assert (
        'alive_worker log table public.log_table is owned by role "mallory", neither the runner\'s role "luca" '
        'nor a superuser: its triggers, defaults, rules and policies run as "luca", and "mallory" can also '
        "change or delete the heartbeats"
    ) in runner.log()


def test_status_counts_a_runner_s_claim_only_for_the_table_it_was_asked_about(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            "CREATE TABLE public.other (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())",
        ],
        preload=False,
    )
    superuser = dsn(cluster, user=cluster.node.os_ops.username)
    with cluster.connect(user="luca") as claim:
        # A forged claim, with fresh rows to show: the lock and the name on a table of another's.
        cluster.sql("INSERT INTO public.other (message) VALUES ('fresh')")
        claim.execute("SET application_name = 'alive-worker run: sleeping (60000ms)'")
        claim.execute("SELECT pg_advisory_lock(x'616C7677'::int, 'public.other'::regclass::oid::int)")
        pid = claim.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        refusal = (
            f"alive-worker run session {pid} of role luca holds the runner's lock on public.other, "
            "not on public.log_table, the table asked about (--table): not counted"
        )
        for args in (["status", "--runner", "--dsn", superuser], ["status", "--dsn", superuser]):
            refused = cli(*args)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert refused.stdout.startswith(
                "CRITICAL: no runner: no alive-worker run session writes the table asked about "
                "(1 claim on another table not counted)"
            ), refused.stdout
            assert refusal in refused.stdout
        # A runner of the table asked about counts; the claim beside it still does not.
        start_runner("--dsn", dsn(cluster), "--interval", INTERVAL)
        cluster.wait_for_heartbeats(3)
        ok = wait_for(
            lambda: r if (r := cli("status", "--runner", "--dsn", superuser)).returncode == 0 else None,
            "status OK for the runner of public.log_table",
        )
        assert ok.stdout.startswith("OK: 1 sleeping"), ok.stdout
        assert refusal in ok.stdout
        # Asked about the other table, the claim on it is what counts.
        other = cli("status", "--runner", "--table", "public.other", "--dsn", superuser)
        # ... and luca may not write it: a claim, never OK (red team: any role's claim set the interval judged).
        assert other.returncode == 2, other.stdout
        assert "its role may not write public.other" in other.stdout, other.stdout
        assert re.search(r"^postgres +failing +\d+ +public\.other ", other.stdout, re.M), other.stdout
        assert "holds the runner's lock on public.log_table, not on public.other" in other.stdout


def test_a_hook_that_outlives_tick_timeout_is_cut_off_and_the_runner_goes_on(
    managed: Cluster, start_runner: Callable[..., RunningRunner], tmp_path: Path
) -> None:
    # No statement of the server's to time out: only the runner's own deadline ends this tick.
    (tmp_path / "hooks").mkdir()
    marker = tmp_path / "hooks" / "hung once"
    hook = write_hook(
        tmp_path / "hooks",
        f"""
import pathlib
import time

def hook(tick):
    marker = pathlib.Path({str(marker)!r})
    if tick.number == 3 and not marker.exists():
        marker.touch()
        while True:
            try:
                time.sleep(60)
            except Exception:
                pass
""",
    )
    runner = start_runner(
        "--dsn", dsn(managed), "--interval", INTERVAL, "--tick-timeout", "300ms", "--hook", hook
    )
    managed.wait_for_heartbeats(2)
    wait_for(lambda: "the tick took longer than tick_timeout (300 ms)" in runner.log(), "the tick cut off", 3)
    # The tick's heartbeat was rolled back with it; the next commits, as number 3.
    rows = managed.wait_for_heartbeats(4)
    assert numbers(rows)[:4] == [1, 2, 3, 4], runner.log()


# ---- the tick's round trips, and what its one statement of settings sets ----

# What tick_start's one statement stands for: the SET LOCAL statements the runner's ticks sent
# until 1.3, one each, in this order.
SET_LOCAL_EQUIVALENT = [
    "SET LOCAL SESSION AUTHORIZATION DEFAULT",
    "SET LOCAL ROLE NONE",
    "SET LOCAL search_path = pg_catalog, pg_temp",
    "SET LOCAL DateStyle = ISO, MDY",
    "SET LOCAL IntervalStyle = postgres",
    "SET LOCAL TimeZone = UTC",
    "SET LOCAL statement_timeout = 2500",
    "SET LOCAL lock_timeout = 0",
    "SET LOCAL idle_in_transaction_session_timeout = 2500",
    "SET LOCAL synchronous_commit = local",
    "SET LOCAL client_connection_check_interval = 500",
]
# What the table's code, run as the runner's role, could have set for the session before a tick.
HOSTILE_SESSION = [
    "SET ROLE mallory",
    "SET search_path = public",
    "SET DateStyle = SQL, DMY",
    "SET IntervalStyle = iso_8601",
    "SET TimeZone = 'Pacific/Chatham'",
    "SET statement_timeout = 0",
    "SET lock_timeout = 1",
    "SET idle_in_transaction_session_timeout = 0",
    "SET synchronous_commit = remote_apply",
    "SET client_connection_check_interval = 0",
]
SETTINGS_READ = (
    "SELECT session_user, current_user, current_setting('role'), current_setting('session_authorization'), "
    + ", ".join(
        f"current_setting('{name}')"
        for name in (
            "search_path",
            "DateStyle",
            "IntervalStyle",
            "TimeZone",
            "statement_timeout",
            "lock_timeout",
            "idle_in_transaction_session_timeout",
            "synchronous_commit",
            "client_connection_check_interval",
        )
    )
)


def test_the_tick_s_settings_statement_sets_what_set_local_sets(
    make_cluster: Callable[..., Cluster],
) -> None:
    import psycopg

    from alive_worker.runner.loop import tick_start

    cluster = make_cluster(
        setup_sql=[*LEAST_PRIVILEGE_SETUP, "CREATE ROLE mallory", "GRANT mallory TO luca"], preload=False
    )
    with psycopg.connect(dsn(cluster), autocommit=True) as conn:
        if conn.info.server_version < 140000:
            pytest.skip("client_connection_check_interval is PostgreSQL 14's")
        for statement in HOSTILE_SESSION:
            conn.execute(statement)
        hostile = conn.execute(SETTINGS_READ).fetchone()
        seen = []
        for settings in ([tick_start(2500, conn.info.server_version)], SET_LOCAL_EQUIVALENT):
            with conn.transaction():
                for statement in settings:
                    conn.execute(statement)
                seen.append(conn.execute(SETTINGS_READ).fetchone())
            # Local to the transaction: the session's own come back after it.
            assert conn.execute(SETTINGS_READ).fetchone() == hostile
    by_set_config, by_set_local = seen
    assert by_set_config == by_set_local
    assert by_set_config == (
        "luca", "luca", "none", "luca", "pg_catalog, pg_temp", "ISO, MDY", "postgres", "UTC",
        "2500ms", "0", "2500ms", "local", "500ms",
    )  # fmt: skip


# Runs the runner of this checkout in a process of its own, on the grid at 10 ms, and prints
# how many times each tick waited for the server: every exchange with the server goes through
# psycopg's Connection.wait() (its cursors, commit and rollback, and client_spi's pipeline), and
# each wait is one round trip: what the client sends, then the server's answer.
COUNT_ROUND_TRIPS = r"""
import json, sys
from alive_worker.runner import config, loop

class Counting(loop.RunnerConnection):
    waits = 0
    def wait(self, gen, *args, **kwargs):
        Counting.waits += 1
        return super().wait(gen, *args, **kwargs)

loop.RunnerConnection = Counting
per_tick = []
tick = loop.Runner._tick

def counted_tick(self):
    Counting.waits = 0
    tick(self)
    per_tick.append(Counting.waits)
    if len(per_tick) == int(sys.argv[3]):
        self.stopping = True
        raise loop.Stop("enough")

loop.Runner._tick = counted_tick
flags = {"dsn": sys.argv[1], "interval": "10ms", "tick_timeout": "10s", **json.loads(sys.argv[2])}
runner = loop.Runner(config.build(None, flags))
runner.run()
print(json.dumps({"per_tick": per_tick, "ok": runner.counters.ticks_ok}))
"""


def round_trips_per_tick(cluster: Cluster, ticks: int, **flags: str) -> list[int]:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", COUNT_ROUND_TRIPS, dsn(cluster), json.dumps(flags), str(ticks)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PG", "ALIVE_WORKER_"))},
    )
    assert result.returncode == 0, result.stderr
    counted = json.loads(result.stdout)
    assert counted["ok"] == ticks, result.stderr
    return list(counted["per_tick"])


def test_a_tick_without_hook_or_retention_due_is_one_round_trip(managed: Cluster, tmp_path: Path) -> None:
    # The first tick prepares (the table's checks) and names the session: more; then one each,
    # BEGIN, the settings, the INSERT and COMMIT together.
    assert round_trips_per_tick(managed, 8)[2:] == [1] * 6
    assert numbers(managed.heartbeats()) == list(range(1, 9))
    # With a hook, the hook runs after the INSERT and before COMMIT: more round trips (the hook's
    # savepoint, its release, COMMIT), the INSERT still with the transaction's start.
    (tmp_path / "hooks").mkdir()
    hook = write_hook(tmp_path / "hooks", "def hook(tick):\n    pass\n")
    with_hook = round_trips_per_tick(managed, 4, hook=hook)
    assert with_hook[2:] == [4, 4], with_hook


def test_an_insert_that_writes_nothing_fails_the_tick_and_says_why(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(setup_sql=LEAST_PRIVILEGE_SETUP, preload=False)
    runner = start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--message", MESSAGE)
    cluster.wait_for_heartbeats(2)
    cluster.sql("CREATE RULE nothing_here AS ON INSERT TO public.log_table DO INSTEAD NOTHING")
    wait_for(
        lambda: "wrote no row: DO INSTEAD rule nothing_here discarded it (SQLSTATE 55000)" in runner.log(),
        "the INSERT that wrote nothing reported",
    )
    assert runner.process.poll() is None
    cluster.sql("DROP RULE nothing_here ON public.log_table")
    # The numbering goes on from the last heartbeat written: the ticks that wrote nothing count none.
    beats = numbers(cluster.wait_for_heartbeats(5))
    assert beats == list(range(1, len(beats) + 1)), beats


# Every statement the runner's session has prepared on the server, and names it might use, taken
# over by the table's code: dropped and prepared again as SELECTs (a red team did this to BEGIN,
# the settings, the INSERT and COMMIT, and ticks went on "OK" with nothing written).
HIJACK_PREPARED = """CREATE FUNCTION public.hijack() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        taken record;
        guess text;
    BEGIN
        FOR taken IN SELECT name, parameter_types FROM pg_catalog.pg_prepared_statements LOOP
            EXECUTE format('DEALLOCATE %I', taken.name);
            IF cardinality(taken.parameter_types) = 0 THEN
                EXECUTE format('PREPARE %I AS SELECT 1', taken.name);
            ELSE
                EXECUTE format('PREPARE %I(%s) AS SELECT 1', taken.name,
                               array_to_string(taken.parameter_types::text[], ','));
            END IF;
        END LOOP;
        FOREACH guess IN ARRAY ARRAY['alive_worker_begin', 'alive_worker_commit', 'alive_worker_1',
                                     'alive_worker_2', 'alive_worker_3', 'alive_worker_4'] LOOP
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE name = guess) THEN
                EXECUTE format('PREPARE %I(text) AS SELECT 1', guess);
            END IF;
        END LOOP;
        RETURN NEW;
    END $$"""


def test_statements_prepared_in_the_runner_s_session_by_the_table_s_code_replace_none_of_its_own(
    make_cluster: Callable[..., Cluster], start_runner: Callable[..., RunningRunner]
) -> None:
    cluster = make_cluster(
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            HIJACK_PREPARED,
            "CREATE TRIGGER hijack BEFORE INSERT ON public.log_table FOR EACH ROW "
            "EXECUTE FUNCTION public.hijack()",
        ],
        preload=False,
    )
    port = free_port()
    start_runner("--dsn", dsn(cluster), "--interval", INTERVAL, "--metrics-listen", f"127.0.0.1:{port}")
    # Each tick's trigger took over what the last left prepared: every heartbeat is still written,
    # numbered without a gap, and each committed (no session left idle in a transaction).
    rows = cluster.wait_for_heartbeats(8)
    assert numbers(rows)[:8] == list(range(1, 9)), rows
    assert cluster.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'luca' AND state = 'idle in transaction'"
        " AND now() - state_change > interval '1 second'"
    ) == [(0,)]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    ok = re.search(
        r'alive_worker_ticks_total\{database="postgres",result="ok",table="public.log_table"\} (\d+)', text
    )
    assert ok is not None, text
    # The runner's count of heartbeats is never ahead of the rows: none counted that was not written.
    assert int(ok.group(1)) <= cluster.sql("SELECT count(*) FROM public.log_table")[0][0]
