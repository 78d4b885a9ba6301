"""Every way a client can be refused: the view, the status and the metrics agree with a fresh client.

One table of situations, one line each: what the superuser does to refuse
(or, for a neighbour that looks like a refusal, not refuse) clients, how it
is undone, and whether an ordinary client can write meanwhile.  The judge of
"can clients write" is a fresh session of the ordinary role app, over TCP,
trying an INSERT within a deadline; the worker runs as its own role, alive,
and probes as app.  For each situation the test asserts, both while it holds
and after it is undone:

- the judge says what the line says (the situation is real, not a no-op);
- the view's state, `alive-worker status` and `alive_worker_up` agree with
  the judge, and keep agreeing for several probes (never OK while clients
  cannot write, never failing while they can, the undo included).

A new situation is one line of SITUATIONS.

The probe writes no table (it runs none of a table's code): what the probe
role alone may do on the heartbeat table (INSERT revoked from app, say) is
no situation here; what stops every role's write to it stops the worker's
own tick.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from conftest import ORIGINAL_TABLE, Cluster, wait_for
from test_cli import as_json, cli, dsn

# The worker's role, the clients' role (which the probe takes), and a database
# to watch from that no situation touches.
SETUP = [
    "CREATE ROLE alive LOGIN",
    "CREATE ROLE app LOGIN",
    ORIGINAL_TABLE,
    "GRANT INSERT ON public.log_table TO alive, app",
    "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO alive, app",
    "CREATE DATABASE watch",
]
SETTINGS = {
    "role": "alive",
    "probe_role": "app",
    "probe_interval": "100ms",
    "probe_timeout": "1s",
    # Long enough for a busy machine, short enough that a tick blocked on a lock ends.
    "tick_timeout": "2s",
}
# How long the judge waits for its INSERT to commit: past the probe's timeout.
JUDGE_DEADLINE = 3.0
# How long a verdict must hold once reached: ten probes and ticks.
HOLDS_FOR = 1.0
# How long the server must refuse every new session of app before its slots count as used up:
# past the probe's timeout, the longest a session of the worker's probe lasts.
SLOTS_STAY_FULL_SECONDS = 2.0
WATCH = "watch"
OK_STATES = {"sleeping", "ticking", "in the hook"}
# A worker (re)started and not yet ticked says nothing of clients either way: no verdict.
NO_VERDICT_YET = {"starting", "restarting", "connecting"}


@dataclass
class Scene:
    """A cluster, and what a situation keeps open until it is undone."""

    cluster: Cluster
    held: list[psycopg.Connection[Any]] = field(default_factory=list)

    def superuser(self, statement: str, dbname: str = WATCH) -> None:
        """A statement in a session of its own, which writes whatever the situation says."""
        with self.cluster.connect(dbname=dbname) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(statement)

    def release(self) -> None:
        while self.held:
            with contextlib.suppress(psycopg.Error):
                self.held.pop().close()


Step = Callable[[Scene], None]


def sql(*statements: str, dbname: str = "postgres") -> Step:
    def run(scene: Scene) -> None:
        for statement in statements:
            scene.superuser(statement, dbname)

    return run


def system(setting: str, value: str | None) -> Step:
    """ALTER SYSTEM SET (or RESET, value None) and reload."""

    def run(scene: Scene) -> None:
        if value is None:
            scene.superuser(f"ALTER SYSTEM RESET {setting}")
        else:
            scene.superuser(f"ALTER SYSTEM SET {setting} = '{value}'")
        reload(scene)

    return run


def hba(*lines: str) -> Step:
    """pg_hba.conf with these lines first (none: as it was), reloaded."""

    def run(scene: Scene) -> None:
        path = f"{scene.cluster.node.data_dir}/pg_hba.conf"
        with open(path) as file:
            kept = [line for line in file.read().splitlines() if "# situation" not in line]
        with open(path, "w") as file:
            file.write("\n".join([*(f"{line}  # situation" for line in lines), *kept]) + "\n")
        reload(scene)

    return run


def conf(*lines: str) -> Step:
    """postgresql.conf with these lines last (none: as it was), reloaded."""

    def run(scene: Scene) -> None:
        path = f"{scene.cluster.node.data_dir}/postgresql.conf"
        with open(path) as file:
            kept = [line for line in file.read().splitlines() if "# situation" not in line]
        with open(path, "w") as file:
            file.write("\n".join([*kept, *(f"{line}  # situation" for line in lines)]) + "\n")
        reload(scene)

    return run


def restarted(*options: str) -> Step:
    """The server restarted with these command-line options (pg_ctl -o), or none."""

    def run(scene: Scene) -> None:
        scene.release()
        # Stopped and started: pg_ctl restart would take the last options again.
        scene.cluster.node.stop()
        scene.cluster.node.start(params=["-o", " ".join(options)] if options else [])

    return run


def reload(scene: Scene) -> None:
    """pg_reload_conf(), and waits until the postmaster has read the files.

    pg_reload_conf() only signals: a session started just after it may still
    be forked with the old settings, and two reloads in a row may be read as
    one (an invalid value then keeps the value before the first, not the
    first's).  A fresh session inherits the postmaster's pg_conf_load_time().
    """
    before = scene.cluster.sql("SELECT pg_conf_load_time()", dbname=WATCH)[0][0]
    scene.superuser("SELECT pg_reload_conf()")
    wait_for(
        lambda: scene.cluster.sql("SELECT pg_conf_load_time() > %s", (before,), dbname=WATCH)[0][0] or None,
        "the postmaster to read the configuration files again",
    )


def fill_connection_slots(scene: Scene) -> None:
    """Idle sessions of app until the server refuses one: what is left is the superusers'.

    A session that ends just after a refusal (the worker's probe, a command's)
    frees its slot: so the filling goes on, refused every time, for longer than
    such sessions last (in CI, a client then wrote in a slot filled too early)."""
    refused_since: float | None = None
    while refused_since is None or time.monotonic() - refused_since < SLOTS_STAY_FULL_SECONDS:
        try:
            scene.held.append(connect_as_app(scene.cluster))
            refused_since = None
        except psycopg.OperationalError:
            refused_since = refused_since or time.monotonic()
            time.sleep(0.05)


def hold_lock(scene: Scene) -> None:
    conn = scene.cluster.connect(dbname="postgres")
    conn.autocommit = False
    conn.execute("LOCK TABLE public.log_table IN ACCESS EXCLUSIVE MODE")
    scene.held.append(conn)


def release(scene: Scene) -> None:
    scene.release()


@dataclass(frozen=True)
class Situation:
    refuse: tuple[Step, ...]
    undo: tuple[Step, ...]
    clients_can_write: bool


def refused(refuse: Step | tuple[Step, ...], undo: Step | tuple[Step, ...]) -> Situation:
    return Situation(as_steps(refuse), as_steps(undo), clients_can_write=False)


def not_refused(refuse: Step | tuple[Step, ...], undo: Step | tuple[Step, ...]) -> Situation:
    return Situation(as_steps(refuse), as_steps(undo), clients_can_write=True)


def as_steps(steps: Step | tuple[Step, ...]) -> tuple[Step, ...]:
    return steps if isinstance(steps, tuple) else (steps,)


READ_ONLY_ON = "SET default_transaction_read_only = on"
READ_ONLY_RESET = "RESET default_transaction_read_only"

# fmt: off
SITUATIONS: dict[str, Situation] = {
    # Issue 21's table.
    "database read-only, then reset": refused(sql(f"ALTER DATABASE postgres {READ_ONLY_ON}"), sql(f"ALTER DATABASE postgres {READ_ONLY_RESET}")),
    "server fenced, worker role exempt": refused((sql("ALTER ROLE alive SET default_transaction_read_only = off"), system("default_transaction_read_only", "on")), system("default_transaction_read_only", None)),
    "commits wait for a standby, worker role local": refused((sql("ALTER ROLE alive SET synchronous_commit = local"), system("synchronous_standby_names", "nobody")), system("synchronous_standby_names", None)),
    "CONNECT revoked": refused(sql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC"), sql("GRANT CONNECT ON DATABASE postgres TO PUBLIC")),
    "ALLOW_CONNECTIONS false": refused(sql("ALTER DATABASE postgres ALLOW_CONNECTIONS false", dbname=WATCH), sql("ALTER DATABASE postgres ALLOW_CONNECTIONS true", dbname=WATCH)),
    "database CONNECTION LIMIT 0": refused(sql("ALTER DATABASE postgres CONNECTION LIMIT 0"), sql("ALTER DATABASE postgres CONNECTION LIMIT -1")),
    "max_connections used up": refused(fill_connection_slots, release),
    # Its neighbours.
    "role read-only": refused(sql(f"ALTER ROLE app {READ_ONLY_ON}"), sql(f"ALTER ROLE app {READ_ONLY_RESET}")),
    "role read-only in the database": refused(sql(f"ALTER ROLE app IN DATABASE postgres {READ_ONLY_ON}"), sql(f"ALTER ROLE app IN DATABASE postgres {READ_ONLY_RESET}")),
    "every role read-only": refused(sql(f"ALTER ROLE ALL {READ_ONLY_ON}"), sql(f"ALTER ROLE ALL {READ_ONLY_RESET}")),
    "every role read-only in the database": refused(sql(f"ALTER ROLE ALL IN DATABASE postgres {READ_ONLY_ON}"), sql(f"ALTER ROLE ALL IN DATABASE postgres {READ_ONLY_RESET}")),
    "server read-only": refused(system("default_transaction_read_only", "on"), system("default_transaction_read_only", None)),
    "server read-only, then an invalid value reloaded": refused((conf("default_transaction_read_only = on"), conf("default_transaction_read_only = 2")), conf()),
    "server read-only on the command line, reloaded": refused((restarted("-c default_transaction_read_only=on"), reload), restarted()),
    "pg_hba.conf rejects the role": refused(hba("local all app reject", "host all app all reject"), hba()),
    "role NOLOGIN": refused(sql("ALTER ROLE app NOLOGIN"), sql("ALTER ROLE app LOGIN")),
    "role CONNECTION LIMIT 0": refused(sql("ALTER ROLE app CONNECTION LIMIT 0"), sql("ALTER ROLE app CONNECTION LIMIT -1")),
    "role's local_preload_libraries missing": refused(sql("ALTER ROLE app SET local_preload_libraries = 'no_such_library'"), sql("ALTER ROLE app RESET local_preload_libraries")),
    "role's session_preload_libraries missing": refused(sql("ALTER ROLE app SET session_preload_libraries = 'no_such_library'"), sql("ALTER ROLE app RESET session_preload_libraries")),
    "schema USAGE revoked": refused(sql("REVOKE USAGE ON SCHEMA public FROM PUBLIC"), sql("GRANT USAGE ON SCHEMA public TO PUBLIC")),
    "table locked": refused(hold_lock, release),
    "role's lock_timeout and a lock": refused((sql("ALTER ROLE app SET lock_timeout = '10ms'"), hold_lock), (release, sql("ALTER ROLE app RESET lock_timeout"))),
    "role's statement_timeout and a lock": refused((sql("ALTER ROLE app SET statement_timeout = '50ms'"), hold_lock), (release, sql("ALTER ROLE app RESET statement_timeout"))),
    "a CHECK rejects every row": refused(sql("ALTER TABLE public.log_table ADD CONSTRAINT no_rows CHECK (false) NOT VALID"), sql("ALTER TABLE public.log_table DROP CONSTRAINT no_rows")),
    "table renamed away": refused(sql("ALTER TABLE public.log_table RENAME TO moved"), sql("ALTER TABLE public.moved RENAME TO log_table")),
    # Look like refusals, are none: the status must stay OK.
    "server read-only in the file, not on the command line, reloaded": not_refused((conf("default_transaction_read_only = on"), restarted("-c default_transaction_read_only=off"), reload), (conf(), restarted())),
    "commits wait for a standby, server's synchronous_commit local on the command line": not_refused((restarted("-c synchronous_commit=local"), system("synchronous_standby_names", "nosuch")), (system("synchronous_standby_names", None), restarted())),
    "worker role NOLOGIN": not_refused(sql("ALTER ROLE alive NOLOGIN"), sql("ALTER ROLE alive LOGIN")),
    "worker role read-only": not_refused(sql(f"ALTER ROLE alive {READ_ONLY_ON}"), sql(f"ALTER ROLE alive {READ_ONLY_RESET}")),
    "role VALID UNTIL past, no password asked": not_refused(sql("ALTER ROLE app VALID UNTIL '2000-01-01'"), sql("ALTER ROLE app VALID UNTIL 'infinity'")),
    "role's search_path empty": not_refused(sql("ALTER ROLE app SET search_path = ''"), sql("ALTER ROLE app RESET search_path")),
    "role's transaction_read_only": not_refused(sql("ALTER ROLE app SET transaction_read_only = on"), sql("ALTER ROLE app RESET ALL")),
    "worker role's synchronous_commit local": not_refused(sql("ALTER ROLE alive SET synchronous_commit = local"), sql("ALTER ROLE alive RESET synchronous_commit")),
    "database's synchronous_commit local, commits wait for a standby": not_refused((sql("ALTER DATABASE postgres SET synchronous_commit = local"), system("synchronous_standby_names", "nosuch")), (system("synchronous_standby_names", None), sql("ALTER DATABASE postgres RESET synchronous_commit"))),
    "every role's synchronous_commit local, commits wait for a standby": not_refused((sql("ALTER ROLE ALL SET synchronous_commit = local"), system("synchronous_standby_names", "nosuch")), (system("synchronous_standby_names", None), sql("ALTER ROLE ALL RESET synchronous_commit"))),
    "server local, worker role's synchronous_commit on, no standby": not_refused((sql("ALTER ROLE alive SET synchronous_commit = on"), system("synchronous_commit", "local"), system("synchronous_standby_names", "nosuch")), (system("synchronous_standby_names", None), system("synchronous_commit", None), sql("ALTER ROLE alive RESET synchronous_commit"))),
    "server fenced, database read-write": not_refused((sql("ALTER DATABASE postgres SET default_transaction_read_only = off"), system("default_transaction_read_only", "on")), (system("default_transaction_read_only", None), sql(f"ALTER DATABASE postgres {READ_ONLY_RESET}"))),
}
# fmt: on


def connect_as_app(cluster: Cluster, **options: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=cluster.node.host,
        port=cluster.node.port,
        dbname="postgres",
        user="app",
        autocommit=True,
        connect_timeout=int(JUDGE_DEADLINE),
        **options,
    )


def client_can_write(cluster: Cluster) -> bool:
    """Whether a fresh session of app INSERTs and commits within JUDGE_DEADLINE.

    A commit that waits (a lock, a synchronous standby) is not cancelled: a
    cancelled sync-rep wait reports success for a commit no standby has.  It
    is abandoned, and its session terminated.
    """
    verdict: list[bool] = []

    def attempt() -> None:
        try:
            with connect_as_app(cluster, application_name="judge") as conn:
                conn.execute("INSERT INTO public.log_table (message) VALUES ('app')")
            verdict.append(True)
        except psycopg.Error:
            verdict.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(JUDGE_DEADLINE)
    if thread.is_alive():
        cluster.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'judge'",
            dbname=WATCH,
        )
        thread.join(10)
        return False
    return verdict[0]


def what_the_view_says(cluster: Cluster) -> dict[str, Any]:
    """The view's state, read from database watch: cheap enough to sample often."""
    columns, rows = cluster.query("SELECT * FROM alive_worker.workers", dbname=WATCH)
    row = dict(zip(columns, rows[0], strict=True))
    return {
        "state": row["state"],
        "detail": row["state_detail"],
        "probes": (row["probes_ok"], row["probes_failed"], row["probe_error_message"]),
    }


def what_the_worker_says(cluster: Cluster) -> dict[str, Any]:
    """The view's state, the command's status and alive_worker_up, read from database watch."""
    said = what_the_view_says(cluster)
    report = as_json(cli("status", "--json", "--dsn", dsn(cluster, dbname=WATCH)))
    metrics = cli("metrics", "--dsn", dsn(cluster, dbname=WATCH)).stdout
    up = re.search(r'^alive_worker_up\{[^}]*database="postgres"[^}]*\} (\S+)$', metrics, re.MULTILINE)
    assert up is not None, metrics
    return {**said, "status": report["status"], "up": float(up.group(1))}


def says_clients_can_write(said: dict[str, Any]) -> bool | None:
    """True or False when the three agree; None when they do not (yet)."""
    verdicts = {said["state"] in OK_STATES, said["status"] == "OK", said["up"] == 1.0}
    return verdicts.pop() if len(verdicts) == 1 else None


def agrees_and_holds(cluster: Cluster, clients_can_write_now: bool, when: str) -> None:
    """The view comes to say it and goes on saying it; then the command and the metrics say it too.

    The view is sampled every tick or so.  The command and the metrics read
    it, and each of their runs costs a Python start that the suite's other
    clusters share two cores with: they are asked once, when the view has
    held, and must agree with it then.
    """
    last: list[dict[str, Any]] = []

    def view_agrees() -> bool | None:
        last[:] = [what_the_view_says(cluster)]
        if last[0]["state"] in NO_VERDICT_YET:
            return None
        return (last[0]["state"] in OK_STATES) is clients_can_write_now or None

    try:
        wait_for(
            view_agrees,
            f"the view to say clients {'can' if clients_can_write_now else 'cannot'} write {when}",
            timeout=15,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}; it said {last}") from None
    until = time.monotonic() + HOLDS_FOR
    while time.monotonic() < until:
        said = what_the_view_says(cluster)
        assert (said["state"] in OK_STATES) is clients_can_write_now, (when, said)
        time.sleep(0.1)
    said = what_the_worker_says(cluster)
    assert says_clients_can_write(said) is clients_can_write_now, (when, "the view, status and metrics", said)


@pytest.fixture
def scene(make_cluster: Callable[..., Cluster]) -> Iterator[Scene]:
    cluster = make_cluster(settings=SETTINGS, setup_sql=SETUP, conf={"max_connections": "15"}, extension=True)
    cluster.sql("CREATE EXTENSION alive_worker", dbname=WATCH)
    wait_for(lambda: what_the_view_says(cluster)["state"] in OK_STATES or None, "an OK worker", timeout=15)
    made = Scene(cluster)
    yield made
    made.release()


@pytest.mark.parametrize("situation", SITUATIONS.values(), ids=SITUATIONS.keys())
def test_what_the_worker_says_is_what_a_fresh_client_sees(scene: Scene, situation: Situation) -> None:
    assert client_can_write(scene.cluster)
    agrees_and_holds(scene.cluster, True, "before")

    for step in situation.refuse:
        step(scene)
    assert client_can_write(scene.cluster) is situation.clients_can_write
    agrees_and_holds(scene.cluster, situation.clients_can_write, "meanwhile")

    for step in situation.undo:
        step(scene)
    assert client_can_write(scene.cluster)
    agrees_and_holds(scene.cluster, True, "once undone")
