"""What the worker does for a hook's statement is bounded, and never more than the worker's role may do.

The hook host sends each statement to the worker, which runs it in its own
session.  Whatever the hook sends, the worker's work for it is bounded (rows,
bytes, parameters, kept plans) with a clear error naming the limit, it runs
as the worker's role (never as a table's owner), and a message the worker
cannot read ends the host, never the worker's next tick.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from conftest import LEAST_PRIVILEGE_SETUP, UNHURRIED, Cluster, wait_for, write_hook, written

AS_OWNER = """
from pathlib import Path
from alive_worker import spi

OUT = Path(__file__).parent

def attempt(name, query, access):
    try:
        with spi.subtransaction():
            plan = spi.prepare(query, as_owner_of=access)
            (OUT / name).write_text(f"ran|{plan.execute()}")
    except spi.SPIError as error:
        (OUT / name).write_text(f"{error.sqlstate}|{error.message}")

def hook(tick):
    if tick.number != 2:
        return
    # Another table of the owner's, privileges 0: nothing of the worker's checked.
    attempt("secret", "SELECT secret FROM public.etl_secret", spi.TableAccess("public", "etl_data", 0))
    # The named table itself, which the worker's role may read.
    attempt("who", "SELECT current_user::text FROM public.etl_data",
            spi.TableAccess.for_select("public", "etl_data"))
"""


def test_a_hooks_statement_never_runs_with_a_tables_owners_rights_the_worker_lacks(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(tmp_path, AS_OWNER)
    cluster = make_cluster(
        settings={"hook": hook, "interval": "200ms", "role": "luca", **UNHURRIED},
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            "CREATE ROLE etl LOGIN",
            "CREATE TABLE public.etl_data (n int)",
            "CREATE TABLE public.etl_secret (secret text)",
            "INSERT INTO public.etl_secret VALUES ('the secret')",
            "ALTER TABLE public.etl_data OWNER TO etl",
            "ALTER TABLE public.etl_secret OWNER TO etl",
            "INSERT INTO public.etl_data VALUES (1)",
            "GRANT SELECT ON public.etl_data TO luca",
        ],
    )
    cluster.wait_for_worker()
    wait_for(lambda: written(tmp_path / "who"), "the hook's tick 2", timeout=30)
    # Not as the owner of etl_data, whose other table it reads: a statement run as a table's owner must
    # name that table (it would read the secret as the worker's role luca, which may not, until 1.3).
    assert (tmp_path / "secret").read_text() == (
        "55000|alive_worker: the statement run as the owner of public.etl_data does not name that table"
        " as it was locked"
    )
    assert (tmp_path / "who").read_text() == "ran|[('luca',)]"


BOUNDED = """
import time
from pathlib import Path
from alive_worker import spi

OUT = Path(__file__).parent

def attempt(name, *args):
    started = time.monotonic()
    try:
        with spi.subtransaction():
            result = spi.execute(*args)
        (OUT / name).write_text(f"ran|{len(result)} rows|")
    except spi.SPIError as error:
        (OUT / name).write_text(f"{error.sqlstate}|{error.message}|{time.monotonic() - started:.1f}")

def hook(tick):
    if tick.number > 2:
        (OUT / "after").write_text(str(spi.execute("SELECT 1")))
    if tick.number != 2:
        return
    {body}
"""


def run_hook_once(
    make_cluster: Callable[..., Cluster], tmp_path: Path, body: str
) -> Callable[[str], list[str]]:
    hook = write_hook(tmp_path, BOUNDED.replace("{body}", body))
    cluster = make_cluster(settings={"hook": hook, "interval": "200ms", **UNHURRIED})
    worker = cluster.wait_for_worker()
    wait_for(lambda: written(tmp_path / "after"), "the tick after the hook's statements", timeout=60)
    assert (tmp_path / "after").read_text() == "[('1',)]"
    assert cluster.worker_pid() == worker
    return lambda name: (tmp_path / name).read_text().split("|")


def test_a_hooks_statement_is_bounded_before_the_work_is_done(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    outcome = run_hook_once(
        make_cluster,
        tmp_path,
        """attempt("rows", "SELECT g, 'some status text' FROM generate_series(1, 6000000) g")
    attempt("bytes", "SELECT repeat('x', 1024 * 1024) FROM generate_series(1, 70)")
    attempt("parameters", "SELECT 1", *["x"] * 70_000)
    attempt("rows at the limit", "SELECT g FROM generate_series(1, 100000) g")""",
    )
    sqlstate, message, seconds = outcome("rows")
    assert sqlstate == "54000" and "returns more than 100000 rows" in message, message
    assert float(seconds) < 5  # the executor stopped at the limit, not after six million rows
    sqlstate, message, _ = outcome("bytes")
    assert sqlstate == "54000" and f"more than {64 * 1024 * 1024} bytes of text" in message, message
    sqlstate, message, _ = outcome("parameters")
    assert sqlstate == "54000" and "70000 parameters, over the limit of 65535" in message, message
    assert outcome("rows at the limit")[:2] == ["ran", "100000 rows"]


def test_a_hooks_kept_plans_are_capped(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    outcome = run_hook_once(
        make_cluster,
        tmp_path,
        """kept = []
    try:
        for number in range(1001):
            kept.append(spi.prepare(f"SELECT {number}", keep=True))
        (OUT / "kept").write_text(f"ran||{len(kept)}")
    except spi.SPIError as error:
        (OUT / "kept").write_text(f"{error.sqlstate}|{error.message}|{len(kept)}")
    for plan in kept[:10]:
        plan.free()
    (OUT / "freed").write_text(str(spi.prepare("SELECT 'one more once ten are freed'", keep=True).execute()))""",
    )
    sqlstate, message, count = outcome("kept")
    assert sqlstate == "54000" and "1000 plans kept with keep=True, the limit" in message, message
    assert count == "1000"
    assert outcome("freed") == ["[('one more once ten are freed',)]"]


def test_text_with_a_nul_is_refused_not_cut(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    outcome = run_hook_once(
        make_cluster,
        tmp_path,
        """spi.execute("CREATE TABLE public.notes (n int, t text)")
    attempt("nul", "INSERT INTO public.notes VALUES (1, $1) RETURNING t", "first\\x00 second")
    (OUT / "stored").write_text(str(spi.execute("SELECT count(*) FROM public.notes")))""",
    )
    sqlstate, message, _ = outcome("nul")
    assert sqlstate == "22021" and "value $1 contains a NUL character" in message, message
    assert outcome("stored") == ["[('0',)]"]


STUCK_IN_THE_EXECUTOR = """
from pathlib import Path
from alive_worker import spi

def hook(tick):
    if tick.number == 2:
        Path(__file__).with_name("started").write_text("")
        spi.execute("SELECT count(*) FROM generate_series(1, 10000000000)")
"""


def test_sigterm_ends_a_hooks_statement_in_the_executor_within_a_second(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(tmp_path, STUCK_IN_THE_EXECUTOR)
    cluster = make_cluster(settings={"hook": hook, "interval": "200ms", **UNHURRIED})
    worker = cluster.wait_for_worker()
    wait_for(lambda: (tmp_path / "started").exists(), "the hook's statement", timeout=30)
    time.sleep(0.5)
    os.kill(worker, signal.SIGTERM)
    sent = time.monotonic()
    wait_for(
        lambda: not Path(f"/proc/{worker}").exists() or None, "the worker's exit", timeout=10, every=0.01
    )
    assert time.monotonic() - sent < 1.0


def test_the_tick_timeout_ends_a_hooks_statement_in_the_executor(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(tmp_path, STUCK_IN_THE_EXECUTOR)
    cluster = make_cluster(settings={"hook": hook, "interval": "200ms", "tick_timeout": "1s"})
    worker = cluster.wait_for_worker()
    wait_for(lambda: (tmp_path / "started").exists(), "the hook's statement", timeout=30)
    cluster.wait_for_log(r"canceling statement due to statement timeout", timeout=5)
    assert cluster.worker_pid() == worker
    count = len(cluster.heartbeats())
    wait_for(lambda: len(cluster.heartbeats()) > count + 2, "heartbeats after the timeout", timeout=5)


NESTED_CALL = """
import signal
from pathlib import Path
from alive_worker import spi

OUT = Path(__file__).parent

def handler(signum, frame):
    try:
        (OUT / "handler").write_text(f"ran|{spi.execute('SELECT $1', 'handler')}")
    except spi.SPIError as error:
        (OUT / "handler").write_text(f"{error.sqlstate}|{error.message}")

def hook(tick):
    if tick.number != 2:
        return
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    (OUT / "main").write_text(str(spi.execute("SELECT $1 FROM pg_sleep(0.5)", "main")))
"""


def test_a_statement_from_a_signal_handler_never_gets_another_statements_answer(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(tmp_path, NESTED_CALL)
    cluster = make_cluster(settings={"hook": hook, "interval": "200ms", **UNHURRIED})
    cluster.wait_for_worker()
    wait_for(lambda: (tmp_path / "main").exists(), "the hook's statement", timeout=30)
    assert (tmp_path / "main").read_text() == "[('main',)]"
    sqlstate, message = (tmp_path / "handler").read_text().split("|")
    assert sqlstate == "0A000" and "while another of the hook's statements waits for its answer" in message


MALFORMED = """
import sys
from pathlib import Path
from alive_worker import spi, _host_spi

sys.setrecursionlimit(100_000)  # the host encodes what the worker's decoder cannot read

OUT = Path(__file__).parent

def hook(tick):
    if tick.number == 2:
        deep = []
        for _ in range(5000):
            deep = [deep]
        spi.execute("SELECT $1", deep)
    elif tick.number > 2 and not (OUT / "after_deep").exists():
        (OUT / "after_deep").write_text(str(spi.execute("SELECT 1")))
        _host_spi.channel.notify({"op": "log", "level": "not a level", "message": "m"})
        spi.execute("SELECT 2")
    elif (OUT / "after_deep").exists():
        (OUT / "after_level").write_text(str(spi.execute("SELECT 3")))
"""


def test_a_message_the_worker_cannot_read_ends_the_host_never_the_next_tick(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(tmp_path, MALFORMED)
    cluster = make_cluster(settings={"hook": hook, "interval": "200ms", **UNHURRIED})
    worker = cluster.wait_for_worker()
    wait_for(
        lambda: (tmp_path / "after_level").exists(), "the ticks after two malformed messages", timeout=30
    )
    assert (tmp_path / "after_deep").read_text() == "[('1',)]"
    assert (tmp_path / "after_level").read_text() == "[('3',)]"
    log = cluster.log()
    assert "the hook host sent a message the worker refuses (RecursionError" in log
    assert "the hook host sent a message the worker refuses (ValueError" in log
    assert "expected a reply" not in log
    assert cluster.worker_pid() == worker
