"""No path from an ordinary role to superuser through what alive_worker adds (docs/SECURITY.md).

Each test is an attack by mallory, an ordinary role, on a real cluster whose
worker runs as the bootstrap superuser (the default).  mallory's code records
who ran it in public.evidence and tries ALTER ROLE mallory SUPERUSER; every
test then asserts that mallory is still not a superuser and that whatever of
mallory's code ran, ran as mallory.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MESSAGE, Cluster, streaming_standby, wait_for, write_hook
from test_cli import cli, dsn

ATTACKER = "mallory"

# Made by a superuser before the server starts: the attacker, a schema of
# theirs, and a table anyone may write into, where the attacker's code says
# who ran it.
ATTACKER_SETUP = [
    f"CREATE ROLE {ATTACKER} LOGIN",
    f"CREATE SCHEMA {ATTACKER} AUTHORIZATION {ATTACKER}",
    "CREATE TABLE public.evidence (who name, what text)",
    "GRANT INSERT, SELECT ON public.evidence TO PUBLIC",
]

# The attacker's payload, created by the attacker: records who runs it, then
# tries to make the attacker a superuser (which works only if a superuser
# runs it).
PAYLOAD = f"""
SET ROLE {ATTACKER};
CREATE FUNCTION {ATTACKER}.escalate(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.evidence (who, what) VALUES (current_user, what);
    BEGIN
        EXECUTE 'ALTER ROLE {ATTACKER} SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    RETURN true;
END $$;
CREATE FUNCTION {ATTACKER}.escalate_in_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM {ATTACKER}.escalate(TG_OP || ' trigger');
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE FUNCTION {ATTACKER}.escalate_immutable(value text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM {ATTACKER}.escalate('index expression');
    RETURN value;
END $$;
-- The planner folds an immutable call without arguments while it plans a
-- query on the table: a partial index's predicate runs at SELECT time.
CREATE FUNCTION {ATTACKER}.escalate_when_planned() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN {ATTACKER}.escalate('index predicate');
END $$;
"""

HEARTBEAT_TABLE = """CREATE TABLE public.log_table (
    pk serial PRIMARY KEY, message text, ts timestamp without time zone DEFAULT now())"""


def is_superuser(cluster: Cluster, role: str = ATTACKER) -> bool:
    # name = name: the search_path test puts an operator name = text of the attacker's first.
    return bool(cluster.sql("SELECT rolsuper FROM pg_roles WHERE rolname = %s::name", [role])[0][0])


def evidence(cluster: Cluster) -> list[tuple[str, str]]:
    return [(who, what) for who, what in cluster.sql("SELECT who, what FROM public.evidence")]


def assert_attack_failed(cluster: Cluster, payload_must_have_run: bool = True) -> None:
    """mallory is no superuser, and every run of mallory's code was as mallory."""
    assert not is_superuser(cluster), f"{ATTACKER} became a superuser: {evidence(cluster)}"
    runs = evidence(cluster)
    assert all(who == ATTACKER for who, _ in runs), f"the attacker's code ran as another role: {runs}"
    if payload_must_have_run:
        assert runs, "the attacker's code never ran: the test proves nothing"


@pytest.fixture
def attacked_cluster(make_cluster: Callable[..., Cluster]) -> Iterator[Callable[..., Cluster]]:
    """A cluster with the attacker and their payload; more set-up SQL and settings as given."""

    def factory(setup_sql: list[str] | None = None, settings: dict[str, str] | None = None) -> Cluster:
        return make_cluster(settings=settings, setup_sql=[*ATTACKER_SETUP, PAYLOAD, *(setup_sql or [])])

    yield factory


# ---- code in a log table that someone else owns ----

# Ways to make a table run the owner's code when a row goes in.
TABLE_CODE = {
    "trigger": f"CREATE TRIGGER t BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION {ATTACKER}.escalate_in_trigger()",
    "column default": f"ALTER TABLE public.log_table ADD COLUMN extra boolean DEFAULT {ATTACKER}.escalate('default')",
    "rule": f"CREATE RULE r AS ON INSERT TO public.log_table DO ALSO SELECT {ATTACKER}.escalate('rule')",
    "row level security": f"""ALTER TABLE public.log_table ENABLE ROW LEVEL SECURITY;
        ALTER TABLE public.log_table FORCE ROW LEVEL SECURITY;
        CREATE POLICY p ON public.log_table USING (true) WITH CHECK ({ATTACKER}.escalate('policy'))""",
    "index expression": f"CREATE INDEX ON public.log_table ({ATTACKER}.escalate_immutable(message))",
    "domain": f"""CREATE DOMAIN {ATTACKER}.checked_text AS text CHECK ({ATTACKER}.escalate('domain'));
        ALTER TABLE public.log_table ALTER COLUMN message TYPE {ATTACKER}.checked_text""",
}


@pytest.mark.parametrize("code", TABLE_CODE, ids=list(TABLE_CODE))
def test_code_in_a_log_table_made_by_another_role_runs_as_that_role(
    attacked_cluster: Callable[..., Cluster], code: str
) -> None:
    cluster = attacked_cluster(
        setup_sql=[
            f"GRANT CREATE ON SCHEMA public TO {ATTACKER}",
            f"SET ROLE {ATTACKER}; {HEARTBEAT_TABLE}; {TABLE_CODE[code]}",
        ]
    )
    rows = cluster.wait_for_heartbeats(3)
    assert [message for _, message in rows[:3]] == [f"{MESSAGE} {n}" for n in (1, 2, 3)]
    wait_for(lambda: evidence(cluster), f"the {code} to run")
    assert_attack_failed(cluster)
    cluster.wait_for_log(rf'WARNING:  alive_worker log table public\.log_table is owned by role "{ATTACKER}"')
    if code == "trigger":
        doctor = json.loads(cli("doctor", "--json", "--dsn", dsn(cluster)).stdout)
        owner = {check["name"]: check for check in doctor["checks"]}["table postgres owner"]
        assert owner["status"] == "WARNING" and f"belongs to role {ATTACKER}" in owner["text"], owner


def test_a_log_table_replaced_by_the_schema_owner_runs_the_new_owner_s_code_as_them(
    attacked_cluster: Callable[..., Cluster],
) -> None:
    # PostgreSQL 15 on: the database owner owns public, and may drop what is in it.
    cluster = attacked_cluster(setup_sql=[f"ALTER SCHEMA public OWNER TO {ATTACKER}"])
    cluster.wait_for_heartbeats(2)
    assert cluster.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'log_table'") != [(ATTACKER,)]
    with cluster.connect(user=ATTACKER) as conn:
        conn.execute("DROP TABLE public.log_table")
        conn.execute(HEARTBEAT_TABLE)
        conn.execute(TABLE_CODE["trigger"])
    wait_for(lambda: evidence(cluster), "the replaced table's trigger to run")
    wait_for(lambda: len(cluster.heartbeats()) >= 2, "heartbeats in the replaced table")
    assert_attack_failed(cluster)


def test_retention_deletes_from_another_role_s_table_as_that_role(
    attacked_cluster: Callable[..., Cluster],
) -> None:
    cluster = attacked_cluster(
        settings={"retention": "1h"},
        setup_sql=[
            f"GRANT CREATE ON SCHEMA public TO {ATTACKER}",
            f"""SET ROLE {ATTACKER}; {HEARTBEAT_TABLE};
            INSERT INTO public.log_table (message, ts) VALUES ('old', now() - interval '1 day');
            CREATE TRIGGER t BEFORE DELETE ON public.log_table FOR EACH ROW
                EXECUTE FUNCTION {ATTACKER}.escalate_in_trigger()""",
        ],
    )
    wait_for(lambda: ("mallory", "DELETE trigger") in evidence(cluster), "retention's DELETE")
    assert_attack_failed(cluster)
    assert cluster.sql("SELECT count(*) FROM public.log_table WHERE message = 'old'") == [(0,)]


def test_a_view_in_place_of_the_log_table_is_refused_by_name(
    attacked_cluster: Callable[..., Cluster],
) -> None:
    cluster = attacked_cluster(
        setup_sql=[
            "CREATE EXTENSION alive_worker",
            f"GRANT CREATE ON SCHEMA public TO {ATTACKER}",
            f"GRANT pg_monitor TO {ATTACKER}",
            f"""SET ROLE {ATTACKER}; CREATE VIEW public.log_table AS
                SELECT 1 AS pk, 'x'::text AS message, now()::timestamp AS ts WHERE {ATTACKER}.escalate('view')""",
        ]
    )
    cluster.wait_for_log(r"ERROR:  alive_worker log table public\.log_table is a view, not a table")
    # lag() on the configured table reads no view either.
    with (
        cluster.connect(user=ATTACKER) as conn,
        pytest.raises(
            psycopg.errors.WrongObjectType, match=r"heartbeat table public\.log_table is a view, not a table"
        ),
    ):
        conn.execute("SELECT * FROM alive_worker.lag()")
    with cluster.connect(user=ATTACKER) as conn:
        assert conn.execute("SELECT count(*) FROM alive_worker.workers").fetchone() == (1,)
    assert_attack_failed(cluster, payload_must_have_run=False)
    assert evidence(cluster) == []


# ---- lag() ----


def test_lag_on_a_view_of_the_callers_runs_with_the_callers_rights(
    attacked_cluster: Callable[..., Cluster],
) -> None:
    cluster = attacked_cluster(setup_sql=["CREATE EXTENSION alive_worker", f"GRANT pg_monitor TO {ATTACKER}"])
    with cluster.connect(user=ATTACKER) as conn:
        conn.execute(
            f"CREATE TEMP VIEW trap AS SELECT 1 AS pk, now() AS ts WHERE {ATTACKER}.escalate('lag on a view')"
        )
        # From 1.3 every read goes through the one reader, which refuses a view.
        with pytest.raises(psycopg.errors.WrongObjectType, match="is a view, not a table"):
            conn.execute("SELECT * FROM alive_worker.lag('trap')")
    assert_attack_failed(cluster, payload_must_have_run=False)


def test_lag_reads_the_configured_table_of_another_role_as_that_role(
    attacked_cluster: Callable[..., Cluster],
) -> None:
    cluster = attacked_cluster(
        setup_sql=[
            "CREATE EXTENSION alive_worker",
            f"GRANT CREATE ON SCHEMA public TO {ATTACKER}",
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
            f"""SET ROLE {ATTACKER}; {HEARTBEAT_TABLE};
            CREATE INDEX ON public.log_table (pk) WHERE {ATTACKER}.escalate_when_planned()""",
        ]
    )
    # Not by reading the table: a superuser who plans a query on it runs the
    # predicate (PostgreSQL's own rule: superusers do not query others' tables).
    wait_for(lambda: cluster.sql("SELECT ticks_ok >= 3 FROM alive_worker.workers")[0][0], "3 heartbeats")
    cluster.sql("TRUNCATE public.evidence")
    with cluster.connect(user="watcher") as conn:
        reading = conn.execute("SELECT last_heartbeat_at, source_table FROM alive_worker.lag()").fetchone()
    assert reading is not None and reading[0] is not None and reading[1] == "public.log_table"
    assert (ATTACKER, "index predicate") in evidence(cluster), (
        "lag()'s read did not plan a query on the table"
    )
    assert_attack_failed(cluster)


def test_a_view_in_place_of_the_table_is_not_read_on_a_standby(
    attacked_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = attacked_cluster(
        setup_sql=["CREATE EXTENSION alive_worker", "CREATE ROLE watcher LOGIN IN ROLE pg_monitor"]
    )
    standby = streaming_standby(primary, make_standby)
    with primary.connect() as conn:
        conn.execute("DROP TABLE public.log_table")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {ATTACKER}")
    with primary.connect(user=ATTACKER) as conn:
        conn.execute(
            "CREATE VIEW public.log_table AS SELECT 1 AS pk, 'x'::text AS message, now()::timestamp AS ts"
            f" WHERE {ATTACKER}.escalate('view on a standby')"
        )
    wait_for(
        lambda: (
            standby.sql("SELECT relkind FROM pg_class WHERE oid = to_regclass('public.log_table')")
            == [("v",)]
        ),
        "the view replayed on the standby",
    )
    # Had the view been read, its INSERT would have failed read-only (25006) instead.
    with (
        standby.connect(user="watcher") as conn,
        pytest.raises(psycopg.errors.WrongObjectType, match=r"is a view, not a table"),
    ):
        conn.execute("SELECT * FROM alive_worker.lag()")
    with standby.connect(user="watcher") as conn:
        assert conn.execute("SELECT replication_lag FROM alive_worker.workers").fetchone() == (None,)
    assert_attack_failed(primary, payload_must_have_run=False)


def test_no_function_of_the_extension_runs_with_its_owner_s_rights(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(extension=True)
    definers = cluster.sql(
        "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'alive_worker'::regnamespace AND prosecdef"
    )
    assert definers == []
    # And none of its SQL functions resolves names through the caller's search_path.
    unpinned = cluster.sql(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
        " WHERE p.pronamespace = 'alive_worker'::regnamespace AND l.lanname <> 'c'"
        " AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)"
    )
    assert unpinned == []


# ---- search_path ----

# Functions and an operator that shadow pg_catalog's for anyone whose
# search_path puts evil first.
SHADOWS = f"""
SET ROLE {ATTACKER};
CREATE SCHEMA evil;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM {ATTACKER}.escalate('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.has_table_privilege(oid, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM {ATTACKER}.escalate('has_table_privilege'); RETURN pg_catalog.has_table_privilege($1, $2); END $$;
CREATE FUNCTION evil.has_sequence_privilege(oid, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM {ATTACKER}.escalate('has_sequence_privilege'); RETURN pg_catalog.has_sequence_privilege($1, $2); END $$;
CREATE FUNCTION evil.agg_step(text, text, text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM {ATTACKER}.escalate('string_agg'); RETURN pg_catalog.concat($1, $3, $2); END $$;
CREATE AGGREGATE evil.string_agg(text, text) (sfunc = evil.agg_step, stype = text);
CREATE FUNCTION evil.name_eq_text(name, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM {ATTACKER}.escalate('operator ='); RETURN $1::text OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (leftarg = name, rightarg = text, function = evil.name_eq_text);
ALTER DATABASE postgres SET search_path = evil, pg_catalog, public;
"""


def test_the_worker_s_queries_call_nothing_a_database_owner_put_on_the_search_path(
    attacked_cluster: Callable[..., Cluster],
) -> None:
    cluster = attacked_cluster(
        settings={"retention": "1h"},
        setup_sql=[f"ALTER DATABASE postgres OWNER TO {ATTACKER}", SHADOWS],
    )
    cluster.wait_for_heartbeats(5)
    # The trap works for anyone who uses the database's path.
    with cluster.connect(user=ATTACKER) as conn:
        conn.execute("SELECT now()")
    assert evidence(cluster) == [(ATTACKER, "now")]
    assert_attack_failed(cluster)
    # The table the worker made keeps pg_catalog's now(), not the path's: this
    # session's path is the database's, so pg_get_expr names the schema of a
    # function that the path would not find first.
    default = cluster.sql(
        "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef"
        " WHERE adrelid = 'public.log_table'::regclass AND adnum = 3"
    )
    assert default == [("pg_catalog.now()",)]


# ---- start() and stop() ----


def start_after(cluster: Cluster, barrier: threading.Barrier, results: list[Any]) -> None:
    """Calls start() at the same moment as the other threads at the barrier."""
    with cluster.connect() as conn:
        barrier.wait()
        results.append(conn.execute("SELECT alive_worker.start('postgres')").fetchone())


def test_concurrent_starts_give_one_worker_and_stop_reaches_it(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_worker()
    for _ in range(3):
        assert cluster.sql("SELECT alive_worker.stop('postgres')") == [(True,)]
        assert cluster.worker_pid() is None
        barrier = threading.Barrier(4)
        results: list[Any] = []
        threads = [threading.Thread(target=start_after, args=(cluster, barrier, results)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [(False,), (False,), (False,), (True,)]
        cluster.wait_for_worker()
        workers = cluster.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'alive worker'")
        assert workers == [(1,)]
    assert cluster.sql("SELECT alive_worker.stop('postgres')") == [(True,)]
    assert cluster.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'alive worker'") == [(0,)]


# ---- the command ----

# A table name with an OSC title sequence, BEL, a screen clear and an 8-bit
# CSI, as the configuration file's octal escapes write them.
CONTROL_TABLE_SETTING = r"owned\033]0;owned\007\033[2J\302\233" + "31m"


def test_the_command_never_writes_the_database_s_control_characters(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"table": CONTROL_TABLE_SETTING}, extension=True)
    target = wait_for(
        lambda: (rows := cluster.sql("SELECT target_table FROM alive_worker.workers")) and rows[0][0],
        "the worker's table in the view",
    )
    assert "\x1b]0;owned\x07" in target, repr(target)
    for color in ("never", "always"):
        result = cli("status", "--color", color, "--dsn", dsn(cluster))
        shown = result.stdout + result.stderr
        assert "owned" in shown, shown
        for character in "\x07\x9b":
            assert character not in shown, repr(shown)
        assert "\x1b]" not in shown and "\x1b[2J" not in shown, repr(shown)
        assert r"\x1b]0;owned\x07" in shown, repr(shown)
        if color == "never":
            assert "\x1b" not in shown, repr(shown)


def test_doctor_warns_when_the_worker_runs_as_a_superuser(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_heartbeats(1)
    result = cli("doctor", "--json", "--dsn", dsn(cluster))
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    role = checks["role"]
    assert role["status"] == "WARNING" and "superuser" in role["text"], role
    assert "CREATE ROLE" in role["fix"] and "alive_worker.role" in role["fix"], role


# ---- the hook ----


@pytest.mark.parametrize("writable", ["file", "directory"])
def test_a_hook_that_other_os_users_could_change_is_refused(
    make_cluster: Callable[..., Cluster], tmp_path: Path, writable: str
) -> None:
    hook = write_hook(
        tmp_path,
        "from alive_worker import spi\n\ndef hook(tick):\n    spi.execute('INSERT INTO public.notes VALUES (1)')\n",
    )
    os.chmod(
        hook.rpartition(":")[0] if writable == "file" else tmp_path, 0o666 if writable == "file" else 0o777
    )
    cluster = make_cluster(settings={"hook": hook}, setup_sql=["CREATE TABLE public.notes (n int)"])
    cluster.wait_for_log(r"may be changed by other OS users \(mode [-d]rw.rw.rw.*\): chmod go-w it")
    assert cluster.sql("SELECT count(*) FROM public.notes") == [(0,)]
