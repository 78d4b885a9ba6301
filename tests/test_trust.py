"""Security, round two (issue 19): nothing alive_worker runs for a role executes code a lesser role controls.

The hostile database is derived from the product's own SQL: every name of a
pg_catalog relation or function that appears in the command's queries (the
string constants of alive_worker/cli) or in the extension's scripts (sql/)
gets a look-alike in the public schema of a database that mallory owns,
with her `search_path = public, pg_catalog` on it.  Each look-alike calls a
canary that, run by anyone but mallory, counts itself in a sequence (which
no rollback undoes) and tries ALTER ROLE mallory SUPERUSER.  A query added
later is covered without editing this file.
"""

from __future__ import annotations

import ast
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
from conftest import LEAST_PRIVILEGE_SETUP, ORIGINAL_TABLE, UNHURRIED, Cluster, free_port, wait_for
from psycopg import sql
from test_cli import CLI, cli, dsn

ROOT = Path(__file__).resolve().parent.parent
ATTACKER = "mallory"
MONITOR = "watcher"
HOSTILE_DB = "app"

BASE_SETUP = [
    f"CREATE ROLE {ATTACKER} LOGIN",
    f"CREATE ROLE {MONITOR} LOGIN IN ROLE pg_monitor",
    f"CREATE DATABASE {HOSTILE_DB} OWNER {ATTACKER}",
]

# In the hostile database, as mallory.  canary() is what every look-alike
# calls: harmless when it runs as mallory (she could run it anyway).
CANARY = f"""
CREATE SEQUENCE public.canary_hits;
GRANT USAGE ON SEQUENCE public.canary_hits TO PUBLIC;
CREATE FUNCTION public.canary(what text DEFAULT 'a look-alike') RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
    IF current_user::text <> '{ATTACKER}' THEN
        PERFORM pg_catalog.nextval('public.canary_hits');
        RAISE WARNING 'canary: % ran as %', what, current_user;
        BEGIN
            EXECUTE 'ALTER ROLE {ATTACKER} SUPERUSER';
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END IF;
    RETURN true;
END $$;
CREATE FUNCTION public.canary_step(state text, a text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM public.canary();
    RETURN state;
END $$;
CREATE FUNCTION public.canary_step(state text, a text, b text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
BEGIN
    PERFORM public.canary();
    RETURN state;
END $$;
"""


# ---- the names our SQL uses, from our SQL ----


def product_sql_text() -> str:
    """Every string constant of the package's modules (the command's, the runner's, the worker's),
    and every extension script."""
    texts = []
    for path in sorted((ROOT / "alive_worker").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    texts.extend(path.read_text() for path in sorted((ROOT / "sql").glob("*.sql")))
    return "\n".join(texts)


def catalog_names_used(conn: psycopg.Connection[Any]) -> tuple[list[str], list[str]]:
    """The pg_catalog relations and functions whose names our SQL holds."""
    words = set(re.findall(r"[a-z_][a-z0-9_]*", product_sql_text()))
    relations = [
        name
        for (name,) in conn.execute(
            "SELECT relname::text FROM pg_catalog.pg_class"
            " WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind IN ('r', 'v') ORDER BY 1"
        )
        if name in words
    ]
    functions = [
        name
        for (name,) in conn.execute(
            "SELECT DISTINCT proname::text FROM pg_catalog.pg_proc"
            " WHERE pronamespace = 'pg_catalog'::regnamespace AND prokind IN ('f', 'a') ORDER BY 1"
        )
        if name in words
    ]
    return relations, functions


def plant_look_alikes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """As mallory, in public: a view per relation, and per function an overload of each signature
    plus one taking text for each argument.  Returns how many look-alikes each name got."""
    relations, functions = catalog_names_used(conn)
    planted: dict[str, int] = {}

    def attempt(statement: sql.Composed, name: str) -> None:
        try:
            with conn.transaction():
                conn.execute(statement)
            planted[name] = planted.get(name, 0) + 1
        except psycopg.Error:
            pass  # a signature that cannot be declared (internal, "any", a duplicate)

    for name in relations:
        # Its columns but those of pseudo-types (pg_attribute's attmissingval), which no view may have.
        columns = conn.execute(
            "SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a"
            " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = ('pg_catalog.' || %s)::regclass AND a.attnum > 0 AND t.typtype <> 'p'",
            [name],
        ).fetchone()
        assert columns is not None
        attempt(
            sql.SQL(
                "CREATE VIEW public.{view} AS SELECT {columns} FROM pg_catalog.{view} WHERE public.canary({what});"
                " GRANT SELECT ON public.{view} TO PUBLIC"
            ).format(
                view=sql.Identifier(name),
                columns=sql.SQL(", ").join(map(sql.Identifier, columns[0])),
                what=sql.Literal(f"view {name}"),
            ),
            name,
        )
    signatures = conn.execute(
        "SELECT proname::text, prokind::text, pronargs, pg_catalog.pg_get_function_arguments(oid),"
        " pg_catalog.pg_get_function_result(oid), proretset OR prorettype = 'void'::regtype"
        " OR coalesce('o' = ANY(proargmodes) OR 't' = ANY(proargmodes), false)"
        " FROM pg_catalog.pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY(%s)",
        [functions],
    ).fetchall()
    for name, kind, nargs, arguments, result, returns_bare in signatures:
        function = sql.Identifier(name)
        text_args = sql.SQL(", ").join([sql.SQL("text")] * nargs)
        if kind == "a":
            # An aggregate of text: each step calls the canary.
            attempt(
                sql.SQL("CREATE AGGREGATE public.{}({}) (SFUNC = public.canary_step, STYPE = text)").format(
                    function, text_args
                ),
                name,
            )
            continue
        # A clone of the signature (OUT parameters and all), and one of text
        # arguments: the resolution never looks at what comes back.
        canary = sql.Literal(f"function {name}")
        attempt(
            sql.SQL("CREATE FUNCTION public.{}({}) RETURNS {} LANGUAGE plpgsql AS {}").format(
                function,
                sql.SQL(arguments),
                sql.SQL(result),
                sql.SQL("$$BEGIN PERFORM public.canary({}); RETURN{}; END$$").format(
                    canary, sql.SQL("") if returns_bare else sql.SQL(" NULL")
                ),
            ),
            name,
        )
        if nargs > 0:
            attempt(
                sql.SQL(
                    "CREATE FUNCTION public.{}({}) RETURNS text LANGUAGE plpgsql"
                    " AS $$BEGIN PERFORM public.canary({}); RETURN NULL; END$$"
                ).format(function, text_args, canary),
                name,
            )
    # Operators the queries compare with, on the types their literals take.
    operators = [
        (o, t) for o in ("=", "<>", "<", ">", "<=", ">=", "||", "~~") for t in ("name", "text", "oid")
    ]
    for number, (operator, left) in enumerate(operators):
        function = sql.Identifier(f"canary_operator_{number}")
        attempt(
            sql.SQL(
                "CREATE FUNCTION public.{}(l {}, r text) RETURNS boolean LANGUAGE sql AS 'SELECT public.canary()';"
                " CREATE OPERATOR public.{} (LEFTARG = {}, RIGHTARG = text, FUNCTION = public.{})"
            ).format(function, sql.SQL(left), sql.SQL(operator), sql.SQL(left), function),
            f"operator {operator}",
        )
    return {**{name: planted.get(name, 0) for name in [*relations, *functions]}, **planted}


def canary_hits(cluster: Cluster) -> int:
    row = cluster.sql("SELECT last_value, is_called FROM public.canary_hits", dbname=HOSTILE_DB)[0]
    return int(row[0]) if row[1] else 0


def attacker_is_superuser(cluster: Cluster) -> bool:
    return bool(
        cluster.sql("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s::name", [ATTACKER])[0][0]
    )


def assert_canary_silent(cluster: Cluster, what: str) -> None:
    fired = "\n".join(line for line in cluster.log().splitlines() if "canary:" in line)
    assert canary_hits(cluster) == 0, f"{what} ran mallory's code as another role:\n{fired}"
    assert not attacker_is_superuser(cluster), f"{what} made mallory a superuser:\n{fired}"


def extension_in_the_hostile_database(make_cluster: Callable[..., Cluster]) -> Cluster:
    """A cluster with mallory's database, the extension created there by a superuser."""
    cluster = make_cluster(setup_sql=BASE_SETUP)
    cluster.sql("CREATE EXTENSION alive_worker", dbname=HOSTILE_DB)
    return cluster


def as_attacker(cluster: Cluster, statements: str, dbname: str = HOSTILE_DB) -> None:
    with cluster.connect(dbname, user=ATTACKER) as conn:
        conn.execute(statements)


@pytest.fixture
def silent_again(hostile: Hostile) -> Iterator[Hostile]:
    """The hostile cluster as if no canary had fired: each test judged alone."""
    yield hostile
    hostile.cluster.sql(f"ALTER ROLE {ATTACKER} NOSUPERUSER")
    hostile.cluster.sql("SELECT pg_catalog.setval('public.canary_hits', 1, false)", dbname=HOSTILE_DB)


class Hostile:
    """A cluster with the hostile database, its look-alikes planted."""

    def __init__(self, cluster: Cluster, planted: dict[str, int]) -> None:
        self.cluster = cluster
        self.planted = planted


@pytest.fixture(scope="module")
def hostile(make_module_cluster: Callable[..., Cluster]) -> Hostile:
    cluster = make_module_cluster(settings={"databases": f"postgres, {HOSTILE_DB}"}, setup_sql=BASE_SETUP)
    # The extension, made by a superuser before mallory gets at it; then her
    # table, her look-alikes and her search_path.
    cluster.sql("CREATE EXTENSION alive_worker", dbname=HOSTILE_DB)
    cluster.sql("CREATE EXTENSION alive_worker")
    as_attacker(cluster, CANARY)
    with cluster.connect(HOSTILE_DB, user=ATTACKER) as conn:
        planted = plant_look_alikes(conn)
    # The worker in app runs as the bootstrap superuser and makes its own
    # table there (before the path is set: the harness's own queries follow it).
    cluster.wait_for_heartbeats(3, dbname=HOSTILE_DB, timeout=30)
    as_attacker(cluster, f"ALTER DATABASE {HOSTILE_DB} SET search_path = public, pg_catalog")
    time.sleep(1)  # ticks of the worker, whose session predates the path
    assert canary_hits(cluster) == 0, "the worker itself ran mallory's code"
    return Hostile(cluster, planted)


@pytest.fixture(scope="module")
def make_module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    from conftest import start_cluster, stop_cluster

    made: list[Cluster] = []

    def factory(**kwargs: Any) -> Cluster:
        made.append(start_cluster(tmp_path_factory, **kwargs))
        return made[-1]

    yield factory
    for cluster in made:
        stop_cluster(cluster)


def test_the_hostile_database_shadows_every_catalog_name_our_sql_uses(hostile: Hostile) -> None:
    # Derived, not listed: the names the command's status query needs are among them.
    for name in ("pg_extension", "pg_namespace", "pg_roles", "pg_settings", "current_setting", "format"):
        assert hostile.planted.get(name, 0) >= 1, f"no look-alike of {name}"
    missing = sorted(name for name, count in hostile.planted.items() if count == 0)
    # Every relation and plain function our SQL names has a look-alike;
    # aggregates only where SQL can declare one (count(*) takes "any",
    # percentile_cont is an ordered-set aggregate), and functions only where
    # some signature has no internal type (a table sampling method's).
    undeclarable = {
        name
        for (name,) in hostile.cluster.sql(
            "SELECT proname::text FROM pg_catalog.pg_proc"
            " WHERE pronamespace = 'pg_catalog'::regnamespace GROUP BY proname"
            " HAVING bool_and(prokind = 'a' OR 'internal'::regtype = ANY(proargtypes::oid[])"
            "                 OR prorettype = 'internal'::regtype OR prorettype::regtype::text LIKE '%%handler')"
            # In postgres, not app: this session would follow mallory's path.
        )
    }
    assert set(missing) <= undeclarable, sorted(set(missing) - undeclarable)
    # And the look-alikes work: a session that follows the database's path runs them.
    try:
        with hostile.cluster.connect(HOSTILE_DB, user=MONITOR) as conn:
            conn.execute("SELECT setting FROM pg_settings WHERE name = 'search_path'")
        assert canary_hits(hostile.cluster) >= 1, "the look-alikes never fire: the fixture proves nothing"
    finally:
        hostile.cluster.sql("SELECT pg_catalog.setval('public.canary_hits', 1, false)", dbname=HOSTILE_DB)


COMMANDS = {
    "status": ["status", "--json"],
    "metrics": ["metrics"],
    "lag": ["lag", "--table", "public.log_table", "--warn", "3600", "--crit", "7200"],
    "tail": ["tail", "--count", "1", "--lines", "2"],
    "doctor": ["doctor", "--json"],
    "report": ["report", "--format", "json"],
}
# The command's other subcommands, and where each is tried instead.
NOT_RUN_AGAINST_THE_HOSTILE_DATABASE_HERE = {
    "exporter": "a server: test_one_exporter_scrape_runs_none_of_the_database_owner_s_code, below",
    "rules": "connects to no server: it prints Prometheus rules",
}
# Started against it, as a long-running writer: below.
RUN = "run"


def test_every_subcommand_of_the_command_is_tried_against_the_hostile_database() -> None:
    from alive_worker.cli import SUBCOMMANDS

    assert set(SUBCOMMANDS) == {*COMMANDS, *NOT_RUN_AGAINST_THE_HOSTILE_DATABASE_HERE, RUN}, (
        "a subcommand new to the command is to be run in test_no_command_runs_the_database_owner_s_code"
    )


@pytest.mark.parametrize("user", [None, MONITOR], ids=["superuser", "pg_monitor"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.usefixtures("silent_again")
def test_no_command_runs_the_database_owner_s_code(hostile: Hostile, command: str, user: str | None) -> None:
    result = cli(*COMMANDS[command], "--dsn", dsn(hostile.cluster, user, HOSTILE_DB), timeout=60)
    assert_canary_silent(hostile.cluster, f"alive-worker {command}")
    # And it still works there: a verdict (OK, WARNING, CRITICAL), not an error.
    assert result.returncode in (0, 1, 2), result.stdout + result.stderr
    assert "not to be trusted" not in result.stdout + result.stderr


@pytest.mark.usefixtures("silent_again")
def test_the_runner_in_the_hostile_database_runs_none_of_its_owner_s_code(hostile: Hostile) -> None:
    # A runner's role of least privilege, writing a table of its own in a
    # schema of its own: a superuser made both, mallory's look-alikes and
    # search_path are all around.
    cluster = hostile.cluster
    cluster.sql("DO $$BEGIN CREATE ROLE beat LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$")
    cluster.sql("CREATE SCHEMA IF NOT EXISTS beats AUTHORIZATION beat", dbname=HOSTILE_DB)
    runner = subprocess.Popen(
        [
            *(str(CLI), RUN, "--dsn", dsn(hostile.cluster, "beat", HOSTILE_DB), "--schema", "beats"),
            *("--interval", "100ms", "--retention", "1s"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Its statements: the table's facts, CREATE TABLE, the lock, INSERTs and retention's DELETEs.
        def retention_deleted_the_first() -> bool:
            # pg_catalog's by name: this session follows mallory's search_path.
            made = cluster.sql(
                "SELECT pg_catalog.to_regclass('beats.log_table') IS NOT NULL", dbname=HOSTILE_DB
            )
            ready = (
                "SELECT pg_catalog.min(pk) OPERATOR(pg_catalog.>) 1"
                " AND pg_catalog.count(*) OPERATOR(pg_catalog.>=) 5 FROM beats.log_table"
            )
            return made == [(True,)] and cluster.sql(ready, dbname=HOSTILE_DB) == [(True,)]

        wait_for(retention_deleted_the_first, "heartbeats, and retention deleting the first", timeout=30)
    finally:
        runner.terminate()
        _, stderr = runner.communicate(timeout=30)
        print(f"---- alive-worker run's log ----\n{stderr[-4000:]}")
    assert_canary_silent(cluster, "alive-worker run")
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("user", [None, MONITOR], ids=["superuser", "pg_monitor"])
def test_one_exporter_scrape_runs_none_of_the_database_owner_s_code(
    hostile: Hostile, user: str | None
) -> None:
    port = free_port()
    exporter = subprocess.Popen(
        [
            str(CLI),
            "exporter",
            "--listen",
            f"127.0.0.1:{port}",
            "--dsn",
            dsn(hostile.cluster, user, HOSTILE_DB),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert exporter.stdout is not None
        assert "serving" in exporter.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            body = response.read().decode()
        assert "alive_worker_up" in body
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
    assert_canary_silent(hostile.cluster, "an exporter scrape")


SQL_FUNCTIONS = [
    "SELECT * FROM alive_worker.workers",
    "SELECT * FROM alive_worker.status()",
    "SELECT * FROM alive_worker.lag()",
    "SELECT * FROM alive_worker.lag('public.log_table')",
    "SELECT * FROM alive_worker.heartbeats()",
    "SELECT * FROM alive_worker.heartbeats('public.log_table', 5)",
    "SELECT alive_worker.clock_skew()",
]


@pytest.mark.parametrize("user", [None, MONITOR], ids=["superuser", "pg_monitor"])
@pytest.mark.usefixtures("silent_again")
def test_no_sql_function_runs_the_database_owner_s_code(hostile: Hostile, user: str | None) -> None:
    if user == MONITOR:
        hostile.cluster.sql(f"GRANT SELECT ON public.log_table TO {MONITOR}", dbname=HOSTILE_DB)
    with hostile.cluster.connect(HOSTILE_DB, user=user) as conn:
        # The database's path, as any session there takes it.
        assert conn.execute("SHOW search_path").fetchone() == ("public, pg_catalog",)
        for query in SQL_FUNCTIONS:
            conn.execute(query).fetchall()
    assert_canary_silent(hostile.cluster, "the extension's SQL functions")


# ---- a name that comes to mean another table between the lock and the statement ----

# mallory's: a table of hers whose partial index's predicate is her code,
# ready to be renamed into public.log_table's place; what records her code's
# runs lives in a schema no one renames.
SWAP_READY = """
CREATE SCHEMA m;
GRANT USAGE ON SCHEMA m TO PUBLIC;
CREATE TABLE m.seen (who text, super boolean, backend text);
GRANT INSERT ON m.seen TO PUBLIC;
CREATE FUNCTION m.hit() RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO m.seen SELECT current_user, rolsuper,
        (SELECT backend_type FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid())
    FROM pg_catalog.pg_roles WHERE rolname = current_user;
    RETURN true;
END $$;
CREATE FUNCTION m.predicate(integer) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN m.hit(); END';
CREATE SCHEMA swap;
CREATE TABLE swap.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now());
CREATE INDEX planned_as_the_reader ON swap.log_table (pk) WHERE m.predicate(1);
GRANT USAGE ON SCHEMA swap TO PUBLIC;
GRANT SELECT, INSERT ON swap.log_table TO PUBLIC;
GRANT USAGE ON SEQUENCE swap.log_table_pk_seq TO PUBLIC;
TRUNCATE m.seen;
"""
# Long enough that, without the check, the race was won by the readers hundreds of times and by
# the worker's INSERT 19 and 28 times in two runs of 20 s (docs/SECURITY.md).
SWAP_SECONDS = 10
FLIP = (
    "BEGIN; ALTER SCHEMA public RENAME TO flipping; ALTER SCHEMA swap RENAME TO public;"
    " ALTER SCHEMA flipping RENAME TO swap; COMMIT"
)


def test_a_schema_renamed_between_the_lock_and_the_statement_runs_no_other_table_s_code(
    make_cluster: Callable[..., Cluster],
) -> None:
    # The worker (the bootstrap superuser) writes public.log_table in mallory's
    # database, and superusers read it through heartbeats(), while she swaps
    # her table into its name by renaming schemas, which takes no lock on
    # either table (the red team's race: about a hundred swaps were enough).
    # A tick every 10 ms: the worker's INSERT, its own table's as a superuser (the default), is raced too.
    cluster = make_cluster(
        settings={"databases": f"postgres, {HOSTILE_DB}", "interval": "10ms", **UNHURRIED},
        setup_sql=BASE_SETUP,
    )
    cluster.sql("CREATE EXTENSION alive_worker", dbname=HOSTILE_DB)
    cluster.wait_for_heartbeats(3, dbname=HOSTILE_DB, timeout=30)
    as_attacker(cluster, SWAP_READY)
    stop = threading.Event()
    reads_refused: list[str] = []

    def read_as_a_superuser() -> None:
        with cluster.connect(HOSTILE_DB) as conn:
            conn.autocommit = True
            while not stop.is_set():
                try:
                    conn.execute("SELECT * FROM alive_worker.heartbeats(NULL, 1)").fetchall()
                except psycopg.Error as error:
                    reads_refused.append(str(error).splitlines()[0])

    readers = [threading.Thread(target=read_as_a_superuser) for _ in range(3)]
    for reader in readers:
        reader.start()
    swaps = 0
    try:
        with cluster.connect(HOSTILE_DB, user=ATTACKER) as conn:
            conn.autocommit = True
            until = time.monotonic() + SWAP_SECONDS
            while time.monotonic() < until:
                conn.execute(FLIP)
                swaps += 1
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    ran = cluster.sql("SELECT who, super, backend FROM m.seen WHERE who <> %s", [ATTACKER], dbname=HOSTILE_DB)
    assert ran == [], (
        f"after {swaps} swaps her code ran {len(ran)} times, as {sorted(set(ran))};"
        f" reads refused: {sorted(set(reads_refused))}"
    )
    assert not attacker_is_superuser(cluster)
    assert swaps > 100, swaps


# ---- case 1: a schema made before the extension ----


def test_create_extension_refuses_a_schema_of_a_lesser_role(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(setup_sql=BASE_SETUP)
    as_attacker(cluster, "CREATE SCHEMA alive_worker")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="belongs to role mallory") as raised:
        cluster.sql("CREATE EXTENSION alive_worker", dbname=HOSTILE_DB)
    assert "DROP SCHEMA alive_worker CASCADE" in (raised.value.diag.message_hint or "")
    assert cluster.sql(
        "SELECT count(*) FROM pg_extension WHERE extname = 'alive_worker'", dbname=HOSTILE_DB
    ) == [(0,)]
    # A superuser's schema in which mallory may create is refused too.
    cluster.sql("ALTER SCHEMA alive_worker OWNER TO postgres", dbname=HOSTILE_DB)
    cluster.sql(f"GRANT CREATE ON SCHEMA alive_worker TO {ATTACKER}", dbname=HOSTILE_DB)
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="may create objects in schema alive_worker: mallory"
    ):
        cluster.sql("CREATE EXTENSION alive_worker", dbname=HOSTILE_DB)


def test_an_update_refuses_a_schema_of_a_lesser_role(make_cluster: Callable[..., Cluster]) -> None:
    # 1.2 installed into mallory's schema (1.2 did not check); the update to 1.3 refuses it.
    cluster = make_cluster(setup_sql=BASE_SETUP)
    as_attacker(cluster, "CREATE SCHEMA alive_worker")
    cluster.sql("CREATE EXTENSION alive_worker VERSION '1.2'", dbname=HOSTILE_DB)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="belongs to role mallory"):
        cluster.sql("ALTER EXTENSION alive_worker UPDATE", dbname=HOSTILE_DB)
    assert cluster.sql(
        "SELECT extversion FROM pg_extension WHERE extname = 'alive_worker'", dbname=HOSTILE_DB
    ) == [("1.2",)]


def test_the_command_refuses_an_extension_schema_given_to_a_lesser_role(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(setup_sql=BASE_SETUP)
    as_attacker(cluster, CANARY)
    cluster.sql("CREATE EXTENSION alive_worker", dbname=HOSTILE_DB)
    # A superuser's mistake: the schema given away.  Its new owner replaces the view.
    cluster.sql(f"ALTER SCHEMA alive_worker OWNER TO {ATTACKER}", dbname=HOSTILE_DB)
    as_attacker(cluster, "CREATE VIEW alive_worker.trap AS SELECT public.canary()")
    for command in (["status"], ["metrics"], ["lag", "--table", "pg_class"], ["tail", "--count", "1"]):
        result = cli(*command, "--dsn", dsn(cluster, dbname=HOSTILE_DB))
        output = result.stdout + result.stderr
        assert result.returncode in (2, 3), output  # CRITICAL; metrics: the scrape failed
        assert "not to be trusted: its schema alive_worker belongs to role mallory" in output
    doctor = cli("doctor", "--dsn", dsn(cluster, dbname=HOSTILE_DB))
    assert "not to be trusted" in doctor.stdout
    assert_canary_silent(cluster, "the command")


# ---- case 3: reading a table someone else controls ----


def test_a_table_of_a_lesser_role_is_read_as_that_role(make_cluster: Callable[..., Cluster]) -> None:
    cluster = extension_in_the_hostile_database(make_cluster)
    as_attacker(
        cluster,
        CANARY
        + f"""{ORIGINAL_TABLE};
        INSERT INTO public.log_table (message, ts)
            SELECT 'STILL ALIVE and counting! ' || i, now() - i * interval '1 second' FROM generate_series(1, 5) i;
        CREATE FUNCTION public.planned() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
            'BEGIN RETURN public.canary(); END';
        CREATE INDEX ON public.log_table (pk) WHERE public.planned();""",
    )
    for user in (None, MONITOR):
        if user:
            cluster.sql(f"GRANT SELECT ON public.log_table TO {MONITOR}", dbname=HOSTILE_DB)
        for command in (["tail", "--table", "public.log_table", "--count", "0"],
                        ["lag", "--table", "public.log_table", "--warn", "3600"]):  # fmt: skip
            result = cli(*command, "--dsn", dsn(cluster, user, HOSTILE_DB))
            assert result.returncode == 0, result.stdout + result.stderr
        with cluster.connect(HOSTILE_DB, user=user) as conn:
            reading = conn.execute("SELECT lag FROM alive_worker.lag('public.log_table')").fetchone()
            assert reading is not None and reading[0] is not None
    assert_canary_silent(cluster, "reading mallory's table")


def test_a_view_in_place_of_the_table_is_refused_by_every_reader(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = extension_in_the_hostile_database(make_cluster)
    as_attacker(
        cluster,
        CANARY + "CREATE VIEW public.log_table AS SELECT 1 AS pk, now()::timestamp AS ts, 'x' AS message"
        " WHERE public.canary()",
    )
    for command in (["tail", "--table", "public.log_table", "--count", "0"], ["tail", "--count", "0"],
                    ["lag", "--table", "public.log_table"]):  # fmt: skip
        result = cli(*command, "--dsn", dsn(cluster, dbname=HOSTILE_DB))
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "is a view, not a table" in output, output
    with pytest.raises(psycopg.errors.WrongObjectType):
        cluster.sql("SELECT * FROM alive_worker.lag('public.log_table')", dbname=HOSTILE_DB)
    assert_canary_silent(cluster, "a view in the table's place")


def test_another_table_is_read_only_with_the_caller_s_select(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        setup_sql=[*BASE_SETUP, "CREATE TABLE public.secret (pk int, ts timestamptz, message text)"]
    )
    cluster.sql("CREATE EXTENSION alive_worker")
    with cluster.connect(user=MONITOR) as conn:
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match=r"permission denied for table public\.secret"
        ):
            conn.execute("SELECT * FROM alive_worker.heartbeats('public.secret')")
        # The configured table needs no grant: monitoring reads it.
        cluster.wait_for_heartbeats(2)
        assert len(conn.execute("SELECT * FROM alive_worker.heartbeats(NULL, 2)").fetchall()) == 2


# ---- case 4: TRIGGER on the README's own set-up ----


def escalating_function(returns: str, result: str) -> str:
    """mallory's public.escalate(): records who runs it in public.evidence, then tries ALTER ROLE SUPERUSER."""
    return f"""CREATE FUNCTION public.escalate() RETURNS {returns} LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.evidence VALUES (current_user);
    BEGIN
        EXECUTE 'ALTER ROLE {ATTACKER} SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN {result};
END $$;
"""


TRIGGER_OF_ATTACKER = f"""
CREATE TABLE public.evidence (who text);
GRANT INSERT ON public.evidence TO PUBLIC;
GRANT TRIGGER ON public.log_table TO {ATTACKER};
GRANT CREATE ON SCHEMA public TO {ATTACKER};
SET ROLE {ATTACKER};
{escalating_function("trigger", "NEW")}CREATE TRIGGER escalate BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.escalate();
"""


def test_a_trigger_granted_on_a_superuser_s_table_runs_as_the_worker_s_role(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        settings={"role": "luca"},
        setup_sql=[f"CREATE ROLE {ATTACKER} LOGIN", *LEAST_PRIVILEGE_SETUP, TRIGGER_OF_ATTACKER],
    )
    wait_for(lambda: len(cluster.sql("SELECT who FROM public.evidence")) >= 2, "mallory's trigger to run")
    assert {who for (who,) in cluster.sql("SELECT who FROM public.evidence")} == {"luca"}
    assert not attacker_is_superuser(cluster)


@pytest.mark.parametrize(
    "where",
    ["public.log_table", "public.log_table_2025"],
    ids=["on the table", "on an inheritance child the retention deletes from"],
)
def test_doctor_warns_when_a_superuser_worker_writes_a_table_with_others_code(
    make_cluster: Callable[..., Cluster], where: str
) -> None:
    # Harmless code of mallory's this time: with both superusers it runs as one.
    others_code = f"""
    CREATE TABLE public.log_table_2025 () INHERITS (public.log_table);
    GRANT TRIGGER ON {where} TO {ATTACKER};
    GRANT CREATE ON SCHEMA public TO {ATTACKER};
    SET ROLE {ATTACKER};
    CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
    CREATE TRIGGER noop BEFORE INSERT OR DELETE ON {where} FOR EACH ROW EXECUTE FUNCTION public.noop();
    """
    cluster = make_cluster(
        setup_sql=[f"CREATE ROLE {ATTACKER} LOGIN", ORIGINAL_TABLE, others_code], extension=True
    )
    result = cli("doctor", "--dsn", dsn(cluster))
    assert "both superusers" in result.stdout, result.stdout
    assert "TRIGGER is granted to mallory" in result.stdout
    assert "code in it belongs to mallory" in result.stdout


# ---- case 5: terminated, and heartbeats from the future ----


def test_a_worker_terminated_by_a_lesser_role_is_started_again_and_says_so(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        settings={"role": "luca"},
        setup_sql=[*LEAST_PRIVILEGE_SETUP, "CREATE ROLE signaller LOGIN IN ROLE pg_signal_backend"],
        extension=True,
    )
    first = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(2)
    with cluster.connect(user="signaller") as conn:
        signaller = conn.info.backend_pid
        assert conn.execute("SELECT pg_terminate_backend(%s)", [first]).fetchone() == (True,)

    def terminated() -> dict[str, Any] | None:
        columns, rows = cluster.query("SELECT * FROM alive_worker.workers")
        row = dict(zip(columns, rows[0], strict=True))
        return row if row["terminations"] == 1 else None

    row = wait_for(terminated, "the termination in the view")
    assert row["last_terminated_by"] == signaller
    assert row["last_terminated_at"] is not None
    # Started again after the restart delay, and writing.
    second = wait_for(lambda: (pid := cluster.worker_pid()) != first and pid, "a new worker", timeout=20)
    count = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(count + 2)
    assert second != first
    assert re.search(rf"terminated by SIGTERM from PID {signaller}", cluster.log())
    # stop() still stops it for good.
    cluster.sql("SELECT alive_worker.stop('postgres')")
    time.sleep(7)
    assert cluster.worker_pid() is None


@pytest.mark.parametrize("future", ["2100-01-01 00:00:00", "infinity"])
def test_a_heartbeat_from_the_future_is_no_evidence(
    make_cluster: Callable[..., Cluster], future: str
) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_heartbeats(3)
    cluster.sql("SELECT alive_worker.stop('postgres')")
    cluster.sql(
        "INSERT INTO public.log_table (message, ts) VALUES ('STILL ALIVE and counting! 999', %s)", [future]
    )
    time.sleep(1.5)
    reading = cluster.query(
        "SELECT lag, future_heartbeat_at::text FROM alive_worker.lag('public.log_table')"
    )[1][0]
    assert reading[0] is not None and reading[0].total_seconds() > 0.5, reading
    assert reading[1] is not None
    result = cli("lag", "--table", "public.log_table", "--dsn", dsn(cluster))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "in the future" in result.stdout
    # Only future rows: no measurement at all, and the command says why.
    cluster.sql("DELETE FROM public.log_table WHERE ts <= now()")
    result = cli("lag", "--table", "public.log_table", "--dsn", dsn(cluster))
    assert result.returncode == 2 and "in the future" in result.stdout, result.stdout + result.stderr


# ---- what we ship as an example reads a table as its owner too ----


def test_the_freshness_example_reads_another_role_s_table_as_that_role(
    make_cluster: Callable[..., Cluster],
) -> None:
    # The worker runs as the bootstrap superuser; the application's table is
    # mallory's, with a partial index whose predicate the planner runs at every read.
    cluster = make_cluster(
        settings={"hook": "alive_worker.examples.freshness:hook"},
        setup_sql=[
            f"CREATE ROLE {ATTACKER} LOGIN",
            f"GRANT CREATE ON SCHEMA public TO {ATTACKER}",
            "CREATE TABLE public.evidence (who text)",
            "GRANT INSERT ON public.evidence TO PUBLIC",
            f"""SET ROLE {ATTACKER};
            CREATE TABLE public.orders (created_at timestamptz NOT NULL);
            INSERT INTO public.orders VALUES (now());
            {escalating_function("boolean", "true")}
            CREATE FUNCTION public.planned() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
                'BEGIN RETURN public.escalate(); END';
            CREATE INDEX ON public.orders (created_at) WHERE public.planned();""",
        ],
        conf={
            "hooks.fresh_table": "public.orders",
            "hooks.fresh_column": "created_at",
            "hooks.fresh_within": "1h",
        },
    )
    count = len(cluster.wait_for_heartbeats(3))
    cluster.wait_for_heartbeats(count + 3)
    # The predicate ran at the reads (planned as mallory), never as the worker's superuser.
    runs = {who for (who,) in cluster.sql("SELECT who FROM public.evidence")}
    assert runs == {ATTACKER}, runs
    assert not attacker_is_superuser(cluster)


# ---- found by the red team (issue 19's closing note) ----


def test_a_database_s_settings_change_neither_who_we_run_as_nor_what_we_read(
    make_cluster: Callable[..., Cluster],
) -> None:
    # What a database owner may set on their database, aimed at the worker and the command.
    cluster = make_cluster(
        settings={"databases": f"postgres, {HOSTILE_DB}"},
        setup_sql=[
            *BASE_SETUP,
            f"ALTER DATABASE {HOSTILE_DB} SET role = {ATTACKER}",
            f"ALTER DATABASE {HOSTILE_DB} SET IntervalStyle = 'iso_8601'",
            f"ALTER DATABASE {HOSTILE_DB} SET DateStyle = 'SQL, DMY'",
        ],
    )
    # The harness's own sessions there would run as mallory: role pinned, as the command pins it.
    with psycopg.connect(
        host=cluster.node.host, port=cluster.node.port, dbname=HOSTILE_DB, user=cluster.node.os_ops.username,
        options="-c role=none", autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute("CREATE EXTENSION alive_worker")
    cluster.sql("CREATE EXTENSION alive_worker")
    wait_for(
        lambda: cluster.sql(
            "SELECT ticks_ok >= 3 FROM alive_worker.workers WHERE database = %s", [HOSTILE_DB]
        )[0][0],
        "3 heartbeats in app",
        timeout=30,
    )
    owner = cluster.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'log_table'", dbname=HOSTILE_DB)
    assert owner == [("postgres",)], owner  # made by the worker as its own role, not mallory
    for command in (["status"], ["metrics"], ["lag", "--table", "public.log_table", "--warn", "3600"]):
        result = cli(*command, "--dsn", dsn(cluster, dbname=HOSTILE_DB))
        assert result.returncode in (0, 1), result.stdout + result.stderr
        assert "unexpected" not in result.stdout + result.stderr


CHILD_OWNED_BY_ANOTHER_ROLE = (
    r'has a child table public\.\w+ owned by role "mallory", not by its owner "postgres"'
)


def test_a_child_table_another_role_owns_is_refused_by_every_reader(
    make_cluster: Callable[..., Cluster],
) -> None:
    # A superuser's partitioned table and inheritance parent, each with a child mallory owns and
    # a partial index on it whose predicate the planner runs: read as the parent's owner, a child's
    # code would run as a superuser.
    cluster = extension_in_the_hostile_database(make_cluster)
    as_attacker(
        cluster,
        CANARY
        + """;
        CREATE FUNCTION public.planned() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
            'BEGIN RETURN public.canary(); END';""",
    )
    with cluster.connect(HOSTILE_DB) as conn:
        conn.execute(
            f"""CREATE TABLE public.log_table (pk serial, message text, ts timestamp DEFAULT now())
                    PARTITION BY RANGE (pk);
                CREATE TABLE public.log_table_p0 PARTITION OF public.log_table FOR VALUES FROM (MINVALUE) TO (1000000);
                INSERT INTO public.log_table (message) SELECT 'STILL ALIVE and counting! ' || i FROM generate_series(1, 5) i;
                ALTER TABLE public.log_table_p0 OWNER TO {ATTACKER};
                CREATE TABLE public.inherited (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now());
                CREATE TABLE public.inherited_child () INHERITS (public.inherited);
                ALTER TABLE public.inherited_child OWNER TO {ATTACKER};
                GRANT SELECT ON public.log_table, public.inherited TO {MONITOR}"""
        )
    as_attacker(
        cluster,
        """CREATE INDEX ON public.log_table_p0 (pk) WHERE public.planned();
           CREATE INDEX ON public.inherited_child (pk) WHERE public.planned();""",
    )
    for user in (None, MONITOR):
        for table in ("public.log_table", "public.inherited"):
            for command in (["tail", "--table", table, "--count", "1"],
                            ["lag", "--table", table, "--warn", "3600"],
                            ["report", "--table", table, "--since", "1h"]):  # fmt: skip
                result = cli(*command, "--dsn", dsn(cluster, user, HOSTILE_DB))
                assert result.returncode != 0, (command, result.stdout + result.stderr)
                assert re.search(CHILD_OWNED_BY_ANOTHER_ROLE, result.stdout + result.stderr), (
                    command,
                    result.stdout + result.stderr,
                )
            with cluster.connect(HOSTILE_DB, user=user) as conn:
                for query in (
                    "SELECT lag FROM alive_worker.lag(%s)",
                    "SELECT count(*) FROM alive_worker.heartbeats(%s)",
                ):
                    with pytest.raises(
                        psycopg.errors.InsufficientPrivilege, match=CHILD_OWNED_BY_ANOTHER_ROLE
                    ):
                        conn.execute(query, (table,))
                    conn.rollback()
    assert_canary_silent(cluster, "reading a table with mallory's child")


def test_the_worker_refuses_a_table_with_a_child_another_role_owns(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        setup_sql=[
            f"CREATE ROLE {ATTACKER} LOGIN",
            """CREATE TABLE public.log_table (pk serial, message text, ts timestamp DEFAULT now())
                   PARTITION BY RANGE (pk)""",
            "CREATE TABLE public.log_table_p0 PARTITION OF public.log_table FOR VALUES FROM (MINVALUE) TO (1000000)",
        ],
        extension=True,
    )
    cluster.wait_for_heartbeats(2)
    # Given to her while the worker keeps its plan: the child's own invalidation must reach it.
    cluster.sql(f"ALTER TABLE public.log_table_p0 OWNER TO {ATTACKER}")
    cluster.wait_for_log(CHILD_OWNED_BY_ANOTHER_ROLE)
    written = len(cluster.heartbeats())
    time.sleep(1)
    assert len(cluster.heartbeats()) <= written + 1


def test_an_unlogged_heartbeat_table_is_refused(make_cluster: Callable[..., Cluster]) -> None:
    # Its rows write no WAL: its commits would not wait for synchronous standbys that clients wait for.
    cluster = make_cluster(
        setup_sql=[ORIGINAL_TABLE.replace("CREATE TABLE", "CREATE UNLOGGED TABLE")], extension=True
    )
    cluster.wait_for_log(r"alive_worker table public\.log_table is unlogged: its rows write no WAL")
    assert cluster.heartbeats() == []
    result = cli("status", "--dsn", dsn(cluster))
    assert result.returncode == 2 and "unlogged" in result.stdout, result.stdout


def test_rows_a_day_apart_do_not_make_a_day_s_lag_look_like_none(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_heartbeats(3)
    # Whoever may insert: nine rows above every pk the worker will reach, a day apart, the newest now.
    cluster.sql(
        "INSERT INTO public.log_table (pk, message, ts) SELECT 2147483638 + i, 'STILL ALIVE and counting! 0',"
        " (now() AT TIME ZONE 'UTC') - (9 - i) * interval '1 day' FROM generate_series(1, 9) i"
    )
    time.sleep(3)
    [(lag, interval)] = cluster.sql("SELECT lag, tick_interval FROM alive_worker.lag('public.log_table')")
    # At most ten of this server's intervals (100 ms), never the rows' day.
    assert interval.total_seconds() <= 1 and lag.total_seconds() > 1, (lag, interval)


def test_no_reader_shows_rows_that_row_level_security_hides(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        setup_sql=[
            f"CREATE ROLE {ATTACKER} LOGIN IN ROLE pg_monitor",
            "CREATE TABLE public.messages (pk serial PRIMARY KEY, tenant name, message text, ts timestamptz)",
            "INSERT INTO public.messages (tenant, message, ts) VALUES ('alice', 'secret', now())",
            "ALTER TABLE public.messages ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY own ON public.messages USING (tenant = current_user)",
            f"GRANT SELECT ON public.messages TO {ATTACKER}",
        ],
        extension=True,
    )
    with cluster.connect(user=ATTACKER) as conn:
        assert conn.execute("SELECT count(*) FROM public.messages").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="has row-level security"):
            conn.execute("SELECT * FROM alive_worker.heartbeats('public.messages')")
    result = cli("tail", "--table", "public.messages", "--count", "0", "--dsn", dsn(cluster, ATTACKER))
    assert result.returncode == 3 and "secret" not in result.stdout, result.stdout + result.stderr


def test_tail_shows_each_row_on_one_line(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_heartbeats(2)
    cluster.sql("SELECT alive_worker.stop('postgres')")
    forged = "real\n 3000001  2026-12-04 19:30:00.000  forged row  late 0.1 ms"
    cluster.sql("INSERT INTO public.log_table (message) VALUES (%s)", [forged])
    result = cli("tail", "-n", "1", "--count", "0", "--dsn", dsn(cluster))
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "real\\n 3000001" in lines[1], lines


def test_a_table_replaced_under_a_kept_plan_runs_its_new_owner_s_code_as_them(
    make_cluster: Callable[..., Cluster],
) -> None:
    # The replication_slots example keeps its INSERT's plan; the schema's owner
    # drops the table it checked and makes one with a trigger in its place.
    cluster = make_cluster(
        settings={"hook": "alive_worker.examples.replication_slots:hook", **UNHURRIED},
        setup_sql=[
            f"CREATE ROLE {ATTACKER} LOGIN",
            f"ALTER SCHEMA public OWNER TO {ATTACKER}",
            "CREATE TABLE public.evidence (who text)",
            "GRANT INSERT ON public.evidence TO PUBLIC",
            "CREATE TABLE public.replication_slot_sizes (at timestamptz NOT NULL DEFAULT now(),"
            " slot_name name NOT NULL, active boolean NOT NULL, retained_bytes numeric NOT NULL)",
        ],
    )
    cluster.wait_for_heartbeats(3)
    # The hook has kept its plan before the table is replaced (a hook host slow to start on a busy
    # machine left the first ticks without the hook, and the example then checked the new table):
    # its host started, then ticks, each with the hook.
    wait_for(lambda: re.search(r"hook host \(PID \d+\) started", cluster.log()), "the hook host")
    cluster.wait_for_heartbeats(len(cluster.heartbeats()) + 3)
    as_attacker(
        cluster,
        f"""DROP TABLE public.replication_slot_sizes;
        CREATE TABLE public.replication_slot_sizes (at timestamptz NOT NULL DEFAULT now(),
            slot_name name NOT NULL, active boolean NOT NULL, retained_bytes numeric NOT NULL);
        GRANT INSERT ON public.replication_slot_sizes TO PUBLIC;
        {escalating_function("trigger", "NULL")}
        CREATE TRIGGER escalate BEFORE INSERT ON public.replication_slot_sizes
            FOR EACH STATEMENT EXECUTE FUNCTION public.escalate();""",
        dbname="postgres",
    )
    wait_for(
        lambda: cluster.sql("SELECT count(*) FROM public.evidence")[0][0] >= 2, "the new table's trigger"
    )
    assert {who for (who,) in cluster.sql("SELECT who FROM public.evidence")} == {ATTACKER}
    assert not attacker_is_superuser(cluster)


def test_a_monitoring_role_reads_the_configured_table_without_select_only_where_a_worker_writes(
    make_cluster: Callable[..., Cluster],
) -> None:
    # The worker writes in database postgres only; mallory's database has the extension and a table of that name.
    cluster = make_cluster(setup_sql=BASE_SETUP, extension=True)
    cluster.wait_for_heartbeats(2)
    cluster.sql("CREATE EXTENSION alive_worker", dbname=HOSTILE_DB)
    as_attacker(
        cluster,
        "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now());"
        "INSERT INTO public.log_table (message) VALUES ('a secret of mallory''s')",
    )
    with cluster.connect(HOSTILE_DB, user=MONITOR) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied") as raised:
            conn.execute("SELECT * FROM alive_worker.heartbeats()").fetchall()
        assert 'No alive worker writes in database "app"' in (raised.value.diag.message_detail or "")
    # Given SELECT, as for any other table, it may.
    as_attacker(cluster, f"GRANT SELECT ON public.log_table TO {MONITOR}")
    with cluster.connect(HOSTILE_DB, user=MONITOR) as conn:
        assert [r[2] for r in conn.execute("SELECT * FROM alive_worker.heartbeats()")] == [
            "a secret of mallory's"
        ]
    # Where the worker writes, without SELECT.
    with cluster.connect("postgres", user=MONITOR) as conn:
        assert conn.execute("SELECT count(*) FROM alive_worker.heartbeats()").fetchone()[0] > 0  # type: ignore[index]
