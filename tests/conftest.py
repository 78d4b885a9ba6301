"""Real PostgreSQL clusters with alive_worker preloaded.

testgres makes and starts the clusters (initdb in a temporary directory, our
library in shared_preload_libraries, short intervals); the tests talk to them
with psycopg.  The suite runs as the server's OS user: scripts/test-run sees to
that, after `make install` has put the extension into the server's tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg.sql
import pytest
import testgres
from parallel import (
    PORTS,
    group_by_shared_cluster,
    initialised,
    make_lock_dir,
    postgres_node,
    run_lock,
    slowest_first,
)

PG_CONFIG = os.environ.get("PG_CONFIG", "pg_config")
BIN_DIR = subprocess.check_output([PG_CONFIG, "--bindir"], text=True).strip()
PKGLIB_DIR = subprocess.check_output([PG_CONFIG, "--pkglibdir"], text=True).strip()

# The installed package's own tests run in make installcheck-deb, which names
# the package; a make install tree is not a package, so elsewhere they are
# not collected (rather than reported as skipped in every run).
collect_ignore = [] if os.environ.get("ALIVE_WORKER_PACKAGE") else ["test_debian_package.py"]

# The extension's SQL version that CREATE EXTENSION installs (the control file's default_version).
SQL_VERSION = re.search(
    r"^default_version\s*=\s*'([^']+)'",
    (Path(__file__).parent.parent / "alive_worker.control").read_text(),
    re.M,
).group(1)  # type: ignore[union-attr]

# Short enough for quick tests, long enough that the log stays readable.
TEST_INTERVAL = "100ms"
# For a test of what a tick does, not of how long it may take: the tick
# timeout is by default the interval, and on a busy machine (the suite's own
# workers, other users) a tick can outlast 100 ms, the first above all, which
# loads the hook.  A timed-out tick fails and is rolled back.
UNHURRIED = {"tick_timeout": "1min"}
# So every cluster with a hook is unhurried unless its test sets tick_timeout:
# a hook's start, and its statements, are what a loaded machine slows most
# (a first tick's hook timed out in CI and the row it writes was never there).
MESSAGE = "STILL ALIVE and counting!"

T = TypeVar("T")

# The original project's heartbeat table, as a set-up statement.
ORIGINAL_TABLE = """CREATE TABLE public.log_table (
    pk serial PRIMARY KEY, message text, ts timestamp without time zone DEFAULT now())"""
# The recommended set-up: a role that may insert heartbeats and nothing else.
LEAST_PRIVILEGE_SETUP = [
    "CREATE ROLE luca LOGIN",
    ORIGINAL_TABLE,
    "GRANT INSERT ON public.log_table TO luca",
    "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO luca",
]
CREATE_EXTENSION = "CREATE EXTENSION alive_worker"

# What a server in crash recovery answers; tests wait these out.
RESTARTING = (
    "not yet accepting connections",
    "the database system is starting up",
    "the database system is in recovery mode",
    "Connection refused",
    "server closed the connection unexpectedly",
    "terminating connection",
)
CUT_BY_RESTART = (
    "terminating connection",
    "server closed the connection unexpectedly",
    "consuming input failed",
)


def free_port() -> int:
    """A port nothing listens on now, that no other test is given until this process exits (parallel.py)."""
    return int(PORTS.reserve_port())


def write_hook(directory: Path, body: str) -> str:
    """A hook file the server user can read; returns the alive_worker.hook value."""
    path = directory / "hook.py"
    path.write_text(body)
    os.chmod(directory, 0o755)
    os.chmod(path, 0o644)
    return f"{path}:hook"


def written(path: Path) -> str | None:
    """path's text once something is in it: write_text() makes the file, empty, before it writes,
    so a file that exists may still read ''."""
    try:
        return path.read_text() or None
    except FileNotFoundError:
        return None


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 10.0, every: float = 0.05) -> T:
    """Polls probe every so many seconds until it returns something truthy; fails naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Cluster:
    """A running testgres node, with what the tests ask of a cluster."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._log_mark = 0

    # ---- SQL ----

    def connect(self, dbname: str = "postgres", user: str | None = None) -> psycopg.Connection[Any]:
        """A connection, waiting out a server that is restarting after a crash."""
        deadline = time.monotonic() + 15
        while True:
            try:
                return psycopg.connect(
                    host=self.node.host,
                    port=self.node.port,
                    dbname=dbname,
                    user=user or self.node.os_ops.username,
                    autocommit=True,
                )
            except psycopg.OperationalError as error:
                if not any(state in str(error) for state in RESTARTING) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def sql(self, query: str, params: Any = None, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Runs one statement; returns its rows."""
        return self.query(query, params, dbname)[1]

    def query(
        self, query: str, params: Any = None, dbname: str = "postgres"
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows; run again, once, if a crash restart cut the connection."""
        for attempt in (1, 2):
            try:
                with self.connect(dbname) as conn:
                    cursor = conn.execute(query, params)
                    if cursor.description is None:
                        return [], []
                    return [column.name for column in cursor.description], cursor.fetchall()
            except psycopg.OperationalError as error:
                if attempt == 2 or not any(cut in str(error) for cut in CUT_BY_RESTART):
                    raise
        raise AssertionError("unreachable")

    def set(self, **settings: str) -> None:
        """ALTER SYSTEM SET each alive_worker.<name>, then reload."""
        with self.connect() as conn:
            for name, value in settings.items():
                # Quoted: "table" is a reserved word.
                conn.execute(
                    psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        psycopg.sql.Identifier("alive_worker", name), value
                    )
                )
            conn.execute("SELECT pg_reload_conf()")

    def reset(self, *names: str) -> None:
        with self.connect() as conn:
            for name in names:
                conn.execute(
                    psycopg.sql.SQL("ALTER SYSTEM RESET {}").format(
                        psycopg.sql.Identifier("alive_worker", name)
                    )
                )
            conn.execute("SELECT pg_reload_conf()")

    def server_version_num(self) -> int:
        """The server's major and minor as one number: 160002 for 16.2, 180006 for 18.6."""
        return int(self.sql("SHOW server_version_num")[0][0])

    # ---- the worker ----

    def worker_pid(self) -> int | None:
        rows = self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'alive worker'")
        return rows[0][0] if rows else None

    def wait_for_worker(self, timeout: float = 10.0) -> int:
        return wait_for(self.worker_pid, "the alive worker to run", timeout)

    def wait_until_waiting(self, pid: int, column: str, value: str, what: str) -> None:
        """Waits until pg_stat_activity shows the process waiting: column is wait_event or wait_event_type."""
        query = f"SELECT {column} FROM pg_stat_activity WHERE pid = %s"
        wait_for(lambda: self.sql(query, [pid]) == [(value,)], what)

    def heartbeats(self, table: str = "public.log_table", dbname: str = "postgres") -> list[tuple[int, str]]:
        """(pk, message) of every row, oldest first; [] while the table is missing."""
        exists = self.sql("SELECT to_regclass(%s) IS NOT NULL", [table], dbname)[0][0]
        if not exists:
            return []
        return [
            (pk, message)
            for pk, message in self.sql(f"SELECT pk, message FROM {table} ORDER BY pk", dbname=dbname)
        ]

    def wait_for_heartbeats(
        self, count: int, table: str = "public.log_table", timeout: float = 10.0, dbname: str = "postgres"
    ) -> list[tuple[int, str]]:
        return wait_for(
            lambda: rows if len(rows := self.heartbeats(table, dbname)) >= count else None,
            f"{count} heartbeats in {table}",
            timeout,
        )

    # ---- the server log ----

    def log(self) -> str:
        return Path(self.node.pg_log_file).read_text(errors="replace")

    def mark_log(self) -> None:
        """Later calls to new_log() see only what is written from now on."""
        self._log_mark = len(Path(self.node.pg_log_file).read_bytes())

    def new_log(self) -> str:
        return Path(self.node.pg_log_file).read_bytes()[self._log_mark :].decode(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """First match of pattern in the log written since mark_log()."""
        regex = re.compile(pattern, re.M)
        return wait_for(lambda: regex.search(self.new_log()), f"log line /{pattern}/", timeout)


def start_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    settings: dict[str, str] | None = None,
    setup_sql: list[str] | None = None,
    conf: dict[str, str] | None = None,
    extension: bool = False,
    preload: bool = True,
) -> Cluster:
    """initdb, run setup_sql if any, then start with alive_worker preloaded.

    settings are alive_worker.<name>; conf any other line of postgresql.conf
    (a hook's own settings, which ALTER SYSTEM of PostgreSQL 15 refuses).
    extension: CREATE EXTENSION alive_worker in database postgres, after setup_sql.
    preload=False: a server as a managed service runs it, without our library
    and without any alive_worker.* line (for alive-worker run).
    """
    setup_sql = [*(setup_sql or []), *([CREATE_EXTENSION] if extension else [])]
    if settings and "hook" in settings:
        settings = {**UNHURRIED, **settings}
    base_dir = tmp_path_factory.mktemp("cluster")
    node = initialised(postgres_node(base_dir, BIN_DIR))
    node.append_conf(log_statement="none", log_min_messages="debug1", max_worker_processes="16")
    if setup_sql:
        node.start()
        # One session for all of it, each statement run as psql -c would run it in a session of
        # its own (autocommit, one simple query, then DISCARD ALL: a SET ROLE in one ends with it).
        # A psql per statement cost the suite a process start each.
        with Cluster(node).connect() as conn:
            for statement in setup_sql:
                # Never prepared: DISCARD ALL would drop a statement psycopg thinks it has.
                conn.execute(statement, prepare=False)
                conn.execute("DISCARD ALL", prepare=False)
        node.stop()
    if preload:
        node.append_conf(
            shared_preload_libraries="alive_worker",
            **{
                "alive_worker.interval": TEST_INTERVAL,
                **{f"alive_worker.{k}": v for k, v in (settings or {}).items()},
                **(conf or {}),
            },
        )
    elif conf:
        node.append_conf(**conf)
    node.start()
    return Cluster(node)


def stop_cluster(cluster: Cluster) -> None:
    if cluster.node.status() == testgres.NodeStatus.Running:
        cluster.node.stop(["-m", "immediate"])
    shutil.rmtree(cluster.node.base_dir, ignore_errors=True)
    cluster.node.free_port()


LOG_LINES_ON_FAILURE = 80
DEBUG_LINE = re.compile(r"\] DEBUG\d?:  ")


def pytest_configure(config: pytest.Config) -> None:
    """The run's lock directory (parallel.py), made once, by the process that starts the run."""
    made = make_lock_dir()
    if made is not None:
        config.add_cleanup(lambda: shutil.rmtree(made, ignore_errors=True))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slowest_first(items)
    group_by_shared_cluster(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Set-up, call and teardown under the run's lock: exclusive for a test marked alone."""
    with run_lock(alone=item.get_closest_marker("alone") is not None):
        return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remembers each phase's outcome on the test item, for the fixtures' teardown."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def show_log_if_failed(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        # DEBUG lines (a tick's three at a short interval) would push the cause out of the tail.
        lines = [line for line in cluster.log().splitlines() if not DEBUG_LINE.search(line)]
        tail = lines[-LOG_LINES_ON_FAILURE:]
        print(f"\n---- last {len(tail)} lines but DEBUG of {cluster.node.pg_log_file} ----")
        print("\n".join(tail))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster per test module, with the default settings and a short interval."""
    made = start_cluster(tmp_path_factory)
    made.wait_for_worker()
    yield made
    stop_cluster(made)


@pytest.fixture
def make_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Cluster]]:
    """A factory of clusters with their own settings, stopped after the test."""
    made: list[Cluster] = []

    def factory(
        settings: dict[str, str] | None = None,
        setup_sql: list[str] | None = None,
        conf: dict[str, str] | None = None,
        extension: bool = False,
        preload: bool = True,
    ) -> Cluster:
        made.append(start_cluster(tmp_path_factory, settings, setup_sql, conf, extension, preload))
        return made[-1]

    yield factory
    for cluster in made:
        show_log_if_failed(request, cluster)
        stop_cluster(cluster)


@pytest.fixture
def make_standby(request: pytest.FixtureRequest) -> Iterator[Callable[[Cluster], Cluster]]:
    """Streaming standbys (pg_basebackup -R) of a primary, stopped after the test."""
    made: list[Cluster] = []

    def factory(primary: Cluster) -> Cluster:
        made.append(Cluster(primary.node.replicate().start()))
        return made[-1]

    yield factory
    for standby in made:
        show_log_if_failed(request, standby)
        stop_cluster(standby)


def streaming_standby(primary: Cluster, make_standby: Callable[[Cluster], Cluster]) -> Cluster:
    """A standby that has replayed the primary's heartbeats and streams more."""
    primary.wait_for_heartbeats(3)
    standby = make_standby(primary)
    count = len(primary.heartbeats())
    wait_for(lambda: len(standby.heartbeats()) > count, "new heartbeats replayed on the standby")
    return standby
