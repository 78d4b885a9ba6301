"""Python in the worker: hooks, exceptions, the SPI bridge's error semantics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import MESSAGE, UNHURRIED, Cluster, wait_for, write_hook


def test_exception_in_a_failing_tick_is_logged_with_traceback_and_next_tick_succeeds(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
from pathlib import Path

FLAG = Path(__file__).with_suffix(".raised")

def hook(tick):
    if tick.number == 3 and not FLAG.exists():
        FLAG.write_text("raised")
        raise ValueError("hook failed on purpose at heartbeat 3")
""",
    )
    # fail_tick: the hook's exception fails the tick (by default only the hook).
    cluster = make_cluster(settings={"hook": hook, "hook_failure": "fail_tick"})
    pid = cluster.wait_for_worker()
    rows = cluster.wait_for_heartbeats(5)
    log = cluster.log()
    assert "ERROR:  alive_worker hook failed: ValueError: hook failed on purpose at heartbeat 3" in log
    assert "Traceback (most recent call last)" in log
    assert f'File "{tmp_path / "hook.py"}", line 9, in hook' in log
    # The failed tick was rolled back, heartbeat 3 included; the next one wrote it.
    assert [m for _, m in rows[:5]] == [f"{MESSAGE} {n}" for n in range(1, 6)]
    assert cluster.worker_pid() == pid


def test_hook_that_cannot_be_loaded_names_the_setting(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"hook": "no_such_module:hook", "hook_failure": "fail_tick"})
    cluster.wait_for_log(
        r'ERROR:  alive_worker hook failed: HookError: alive_worker.hook = "no_such_module:hook": '
        r"cannot import no_such_module: ModuleNotFoundError"
    )
    assert cluster.heartbeats() == []
    cluster.set(hook="")
    cluster.wait_for_heartbeats(2)


def test_hook_not_of_the_form_module_function_is_explained(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"hook": "just_a_name"})
    cluster.wait_for_log(r'alive_worker.hook = "just_a_name" is not of the form module:function')


def test_sql_error_caught_in_a_subtransaction_lets_the_tick_commit(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

def hook(tick):
    try:
        with spi.subtransaction():
            spi.execute("INSERT INTO public.notes VALUES ($1)", "lost")
            spi.execute("SELECT 1 / 0")
    except spi.SPIError as error:
        spi.execute("INSERT INTO public.notes VALUES ($1)", f"{tick.number} caught {error.sqlstate}")
""",
    )
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED}, setup_sql=["CREATE TABLE notes (note text)"])
    cluster.wait_for_heartbeats(3)
    notes = [note for (note,) in cluster.sql("SELECT note FROM notes")]
    assert notes[:3] == ["1 caught 22012", "2 caught 22012", "3 caught 22012"]
    assert "ERROR:  " not in cluster.log()


def test_sql_errors_arrive_as_the_spierror_subclass_their_sqlstate_names(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

STATEMENTS = {
    "missing table": "SELECT * FROM public.no_such_table",
    "missing column": "SELECT no_such_column FROM public.notes",
    "lock": "LOCK TABLE public.held IN ACCESS EXCLUSIVE MODE NOWAIT",
    "unknown code": "DO $$ BEGIN RAISE EXCEPTION 'odd' USING ERRCODE = 'AB123'; END $$",
}

def note(text):
    spi.execute("INSERT INTO public.notes (note) VALUES ($1)", text)

# A hook's own subclass, even with a SQLSTATE, changes nothing of what the
# bridge's errors become.
class HooksOwnError(spi.errors.LockNotAvailable):
    sqlstate = "42P01"

def hook(tick):
    for what, statement in STATEMENTS.items():
        try:
            with spi.subtransaction():
                spi.execute(statement)
        except spi.errors.UndefinedTable as error:
            note(f"{what}: UndefinedTable {error.sqlstate}")
        except spi.errors.UndefinedColumn as error:
            note(f"{what}: UndefinedColumn {error.sqlstate}")
        except spi.errors.LockNotAvailable as error:
            note(f"{what}: LockNotAvailable {error.sqlstate}")
        except spi.SPIError as error:
            note(f"{what}: {type(error).__name__} {error.sqlstate}")
""",
    )
    cluster = make_cluster(
        settings={"hook": hook, **UNHURRIED},
        setup_sql=["CREATE TABLE notes (n serial, note text)", "CREATE TABLE held ()"],
    )
    cluster.wait_for_heartbeats(1)
    with cluster.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE public.held IN ACCESS EXCLUSIVE MODE")
        wait_for(
            lambda: cluster.sql("SELECT 1 FROM notes WHERE note LIKE 'lock: %'"),
            "the hook to meet the lock",
        )
        locker.execute("ROLLBACK")
    notes = {note for (note,) in cluster.sql("SELECT note FROM notes")}
    assert {
        "missing table: UndefinedTable 42P01",
        "missing column: UndefinedColumn 42703",
        "lock: LockNotAvailable 55P03",
        "unknown code: SPIError AB123",
    } <= notes, notes
    assert "ERROR:  " not in cluster.log()


def test_sql_error_caught_outside_a_subtransaction_still_fails_the_hook(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

def hook(tick):
    try:
        spi.execute("SELECT 1 / 0")
    except spi.SPIError:
        pass  # too late: without a subtransaction the tick is lost
    spi.execute("INSERT INTO public.notes VALUES ('after')")
""",
    )
    cluster = make_cluster(
        settings={"hook": hook, "hook_failure": "fail_tick"}, setup_sql=["CREATE TABLE notes (note text)"]
    )
    failure = "ERROR:  current heartbeat transaction is aborted by an earlier error (division by zero)"
    wait_for(lambda: cluster.log().count(failure) >= 3, "three failed ticks")
    assert "HINT:  Run statements whose errors you catch inside spi.subtransaction()." in cluster.log()
    assert cluster.heartbeats() == []
    assert cluster.sql("SELECT count(*) FROM notes") == [(0,)]
    assert cluster.worker_pid() is not None


def test_statement_result_rows_reach_python(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

def hook(tick):
    rows = spi.execute("SELECT $1 || '!', NULL, 42 FROM generate_series(1, 2)", "hi")
    spi.execute("INSERT INTO public.notes VALUES ($1)", repr(rows))
""",
    )
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED}, setup_sql=["CREATE TABLE notes (note text)"])
    cluster.wait_for_heartbeats(1)
    assert cluster.sql("SELECT note FROM notes LIMIT 1") == [("[('hi!', None, '42'), ('hi!', None, '42')]",)]


def test_a_freed_plan_is_refused_not_run(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

def hook(tick):
    for plan in (spi.prepare("SELECT $1", ["text"]), spi.prepare("SELECT $1, $2", ["text", "text"])):
        plan.free()
        try:
            plan.execute(*["x"] * plan.nargs)
        except spi.SPIError as error:
            spi.execute("INSERT INTO public.notes VALUES ($1)", f"{error.sqlstate} {error.message}")
""",
    )
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED}, setup_sql=["CREATE TABLE notes (note text)"])
    cluster.wait_for_heartbeats(1)
    refused = "26000 alive_worker plan was freed and cannot be executed"
    assert cluster.sql("SELECT note FROM notes LIMIT 2") == [(refused,), (refused,)]


def test_a_hooks_thread_gets_an_error_not_a_crash(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
import logging
import threading

from alive_worker import spi

def hook(tick):
    outcomes = []

    def from_a_thread():
        for call in (lambda: spi.execute("SELECT 1"), lambda: spi.setting("work_mem")):
            try:
                call()
                outcomes.append("ran")
            except spi.SPIError as error:
                outcomes.append(f"{error.sqlstate} {error.message}")
        logging.getLogger("hook").warning("logged from a thread")

    thread = threading.Thread(target=from_a_thread, name="hook-thread")
    thread.start()
    thread.join()
    for outcome in outcomes:
        spi.execute("INSERT INTO public.notes VALUES ($1)", outcome)
""",
    )
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED}, setup_sql=["CREATE TABLE notes (note text)"])
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(2)
    refused = "0A000 alive_worker.spi was called from a thread other than the worker's"
    assert cluster.sql("SELECT note FROM notes LIMIT 2") == [(refused,), (refused,)]
    cluster.wait_for_log(
        r'alive_worker, thread hook-thread of alive_worker.hook = ".*hook.py:hook": logged from a thread'
    )
    assert cluster.worker_pid() == pid
