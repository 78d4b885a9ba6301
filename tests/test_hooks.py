"""Hooks that cannot hang, crash or corrupt the worker: interrupts, threads, plans, failures."""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import MESSAGE, UNHURRIED, Cluster, wait_for, write_hook

# Generous: the machine is shared.  The figures themselves are in make bench.
GONE_WITHIN = 3.0

# What each blocking hook does from its third tick on, once it has said so in a file.
BLOCKING = {
    "busy loop": "while True:\n        pass",
    "time.sleep": "time.sleep(60)",
    "socket read": "pair = socket.socketpair(); pair[0].recv(1)",
    "subprocess wait": 'subprocess.run(["sleep", "60"])',
    "statement": 'spi.execute("SELECT pg_catalog.pg_sleep(60)")',
}


def blocking_hook(directory: Path, what: str, swallow: bool = False) -> str:
    """A hook that blocks in `what` from tick 3, after touching directory/blocking."""
    body = BLOCKING[what]
    if swallow:
        # Catches every interruption and goes back to blocking.
        body = (
            "while True:\n        try:\n            "
            + body.replace("\n", "\n        ")
            + ("\n        except BaseException:\n            pass")
        )
    os.chmod(directory, 0o777)
    return write_hook(
        directory,
        f"""
import socket
import subprocess
import time
from pathlib import Path

from alive_worker import spi

MARK = Path(__file__).with_name("blocking")

def hook(tick):
    if tick.number < 3:
        return
    MARK.write_text(str(tick.number))
    {body}
""",
    )


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def wait_until_blocking(directory: Path) -> None:
    wait_for(lambda: (directory / "blocking").exists(), "the hook to block")
    time.sleep(0.2)  # into the blocking call itself


def status(cluster: Cluster) -> dict[str, Any]:
    cluster.sql("CREATE EXTENSION IF NOT EXISTS alive_worker")
    names, rows = cluster.query("SELECT * FROM alive_worker.workers")
    return dict(zip(names, rows[0], strict=True))


# ---- interruptible Python ----


@pytest.mark.parametrize("what", list(BLOCKING))
def test_sigterm_ends_a_blocking_hook_promptly(
    make_cluster: Callable[..., Cluster], tmp_path: Path, what: str
) -> None:
    cluster = make_cluster(settings={"hook": blocking_hook(tmp_path, what), "tick_timeout": "1h"})
    pid = cluster.wait_for_worker()
    wait_until_blocking(tmp_path)
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: gone(pid), "the worker to exit", timeout=GONE_WITHIN)
    assert time.monotonic() - started < GONE_WITHIN
    cluster.wait_for_log(rf'background worker "alive worker" \(PID {pid}\) exited with exit code 0')
    assert "alive_worker tick in flight cancelled by SIGTERM and rolled back" in cluster.log()


@pytest.mark.parametrize("what", ["busy loop", "time.sleep"])
def test_fast_shutdown_is_not_held_up_by_a_blocking_hook(
    make_cluster: Callable[..., Cluster], tmp_path: Path, what: str
) -> None:
    cluster = make_cluster(settings={"hook": blocking_hook(tmp_path, what), "tick_timeout": "1h"})
    cluster.wait_for_worker()
    wait_until_blocking(tmp_path)
    started = time.monotonic()
    stopper = threading.Thread(target=lambda: cluster.node.stop(["-m", "fast"]))
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive()
    assert time.monotonic() - started < GONE_WITHIN + 2


@pytest.mark.parametrize("what", ["busy loop", "time.sleep", "socket read"])
def test_the_tick_timeout_ends_a_blocking_hook_and_the_heartbeat_commits(
    make_cluster: Callable[..., Cluster], tmp_path: Path, what: str
) -> None:
    cluster = make_cluster(
        settings={"hook": blocking_hook(tmp_path, what), "interval": "500ms", "tick_timeout": "300ms"}
    )
    pid = cluster.wait_for_worker()
    wait_until_blocking(tmp_path)
    cluster.wait_for_log(r"WARNING:  canceling statement due to statement timeout")
    # Every tick's hook times out, and every tick's heartbeat commits anyway.
    count = len(cluster.heartbeats())
    rows = cluster.wait_for_heartbeats(count + 3)
    assert [m for _, m in rows] == [f"{MESSAGE} {n}" for n in range(1, len(rows) + 1)]
    log = cluster.log()
    assert "DETAIL:  A tick may run until alive_worker.tick_timeout (300 ms) after it was due." in log
    assert re.search(r'CONTEXT:  .*\n?.*alive_worker.hook = ".*hook.py:hook", tick 3', log)
    assert cluster.worker_pid() == pid


def test_a_cancel_request_ends_a_sleeping_hook(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(settings={"hook": blocking_hook(tmp_path, "time.sleep"), "tick_timeout": "1h"})
    pid = cluster.wait_for_worker()
    wait_until_blocking(tmp_path)
    cluster.mark_log()
    count = len(cluster.heartbeats())
    cluster.sql("SELECT pg_cancel_backend(%s)", [pid])
    cluster.wait_for_log(r"WARNING:  canceling alive_worker.hook due to user request", timeout=GONE_WITHIN)
    # The heartbeat of the cancelled tick commits.
    cluster.wait_for_heartbeats(count + 1)
    assert cluster.worker_pid() == pid


def test_postmaster_death_ends_a_sleeping_hook(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(settings={"hook": blocking_hook(tmp_path, "time.sleep"), "tick_timeout": "1h"})
    pid = cluster.wait_for_worker()
    wait_until_blocking(tmp_path)
    os.kill(cluster.node.pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), "the orphaned worker to exit", timeout=GONE_WITHIN)


# A hook runs in the hook host (alive_worker/_host.py): swallowing an
# exception no longer holds anything up, since the worker ends the host.


@pytest.mark.parametrize("what", ["busy loop", "time.sleep", "statement"])
def test_a_hook_that_swallows_sigterm_cannot_hold_up_the_worker(
    make_cluster: Callable[..., Cluster], tmp_path: Path, what: str
) -> None:
    cluster = make_cluster(
        settings={"hook": blocking_hook(tmp_path, what, swallow=True), "tick_timeout": "1h"}
    )
    pid = cluster.wait_for_worker()
    wait_until_blocking(tmp_path)
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: gone(pid), "the worker to exit", timeout=GONE_WITHIN)
    assert time.monotonic() - started < GONE_WITHIN
    cluster.wait_for_log(rf'background worker "alive worker" \(PID {pid}\) exited with exit code 0')
    log = cluster.log()
    assert "alive_worker tick in flight cancelled by SIGTERM and rolled back" in log
    if what != "statement":
        assert "canceling alive_worker.hook: the worker received SIGTERM; the hook host (PID " in log


def test_a_hook_that_swallows_the_timeout_is_ended_with_its_host(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(
        settings={
            "hook": blocking_hook(tmp_path, "busy loop", swallow=True),
            "interval": "500ms",
            "tick_timeout": "300ms",
        }
    )
    pid = cluster.wait_for_worker()
    wait_until_blocking(tmp_path)
    cluster.wait_for_log(r"canceling statement due to statement timeout; the hook host was killed by signal")
    count = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(count + 2)
    assert cluster.worker_pid() == pid
    log = cluster.log()
    # No FATAL, no crash: the worker goes on; only the host was ended.
    assert "FATAL:  alive_worker.hook = " not in log
    assert "terminating any other active server processes" not in log


# ---- threads ----


def test_threads_that_log_and_call_spi_for_30_s_do_no_harm(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    os.chmod(tmp_path, 0o777)
    hook = write_hook(
        tmp_path,
        """
import logging
import threading
import time
from pathlib import Path

from alive_worker import spi

REFUSALS = Path(__file__).with_name("refusals")
started = False
refused = [0, 0, 0]

def pester(index):
    log = logging.getLogger(f"pester{index}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.warning("thread %d still here", index)
        for _ in range(10):
            try:
                spi.execute("SELECT 1")
            except spi.SPIError as error:
                if error.sqlstate == "0A000":
                    refused[index] += 1
            try:
                spi.setting("work_mem")
            except spi.SPIError:
                pass
        time.sleep(0.01)
    REFUSALS.with_suffix(f".{index}").write_text(str(refused[index]))

def hook(tick):
    global started
    if not started:
        started = True
        for index in range(3):
            threading.Thread(target=pester, args=(index,), name=f"pester-{index}", daemon=True).start()
        REFUSALS.with_suffix(".started").write_text(str(time.time()))
    # The worker's thread keeps the bridge busy meanwhile, errors included.
    for _ in range(5):
        spi.execute("SELECT $1", str(tick.number))
        try:
            with spi.subtransaction():
                spi.execute("SELECT 1 / 0")
        except spi.SPIError:
            pass
    logging.getLogger("hook").info("tick %d", tick.number)
""",
    )
    # Every statement is a round trip to the hook host now: more than the 20 ms
    # tick timeout that the interval gives on a busy machine.
    cluster = make_cluster(settings={"hook": hook, "interval": "20ms", "tick_timeout": "1min"})
    pid = cluster.wait_for_worker()
    # Waited for in two steps, each for what it waits on: the start of the
    # cluster, the worker and the host (slow on a busy machine, and no part of
    # what is tested), then the threads' own 30 s, counted from their start,
    # with as much again for their last round.  One fixed timeout for both
    # (60 s on main) ran out on a busy machine with nothing wrong.
    wait_for(lambda: (tmp_path / "refusals.started").exists(), "the hook to start its threads", timeout=120)
    started = float((tmp_path / "refusals.started").read_text())
    wait_for(
        lambda: all((tmp_path / f"refusals.{i}").exists() for i in range(3)),
        "the threads to finish",
        timeout=max(started + 30 + 30 - time.time(), 1),
    )
    assert cluster.worker_pid() == pid
    log = cluster.log()
    assert "terminated by signal" not in log
    assert "double free" not in log
    assert "alive_worker, thread pester-2" in log and "thread 2 still here" in log
    for index in range(3):
        assert int((tmp_path / f"refusals.{index}").read_text()) > 100
    # The heartbeats went on meanwhile: never a stall of seconds (the count a
    # busy machine allows is its own business; a gap is the worker's).
    times = [
        ts.timestamp()
        for (ts,) in cluster.sql(
            "SELECT ts FROM public.log_table WHERE ts BETWEEN to_timestamp(%s)::timestamp"
            " AND to_timestamp(%s)::timestamp ORDER BY ts",
            [started, started + 30],
        )
    ]
    assert len(times) > 30
    assert max(b - a for a, b in itertools.pairwise(times)) < 5, "the heartbeats stalled"


# ---- plans ----


def test_a_plan_without_keep_used_in_a_later_tick_raises_naming_keep(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

plan = None

def hook(tick):
    global plan
    if plan is None:
        plan = spi.prepare("SELECT $1::int + 1", ["int"])
        return
    try:
        plan.execute("1")
    except spi.SPIError as error:
        spi.execute("INSERT INTO public.notes VALUES ($1, $2)", error.message, error.hint)
        raise
""",
    )
    cluster = make_cluster(
        settings={"hook": hook}, setup_sql=["CREATE TABLE notes (message text, hint text)"]
    )
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(5)
    cluster.wait_for_log(
        r"WARNING:  alive_worker plan for 'SELECT \$1::int \+ 1' was prepared without keep=True"
    )
    # The failing hook's note is rolled back with it; its heartbeats are not.
    assert cluster.sql("SELECT count(*) FROM notes") == [(0,)]
    assert "released when that tick ended" in cluster.log()
    assert "HINT:  Prepare it with spi.prepare(query, argtypes, keep=True)" in cluster.log()
    assert cluster.worker_pid() == pid


def used_memory(cluster: Cluster, pid: int) -> int:
    """The worker's memory contexts in use, in bytes, as it logs them."""
    cluster.mark_log()
    cluster.sql("SELECT pg_log_backend_memory_contexts(%s)", [pid])
    match = cluster.wait_for_log(r"Grand total: \d+ bytes in \d+ blocks; \d+ free \(\d+ chunks\); (\d+) used")
    return int(match.group(1))


@pytest.mark.parametrize("keep", [False, True])
def test_plans_of_100000_ticks_do_not_grow_the_workers_memory(
    make_cluster: Callable[..., Cluster], tmp_path: Path, keep: bool
) -> None:
    os.chmod(tmp_path, 0o777)
    hook = write_hook(
        tmp_path,
        f"""
from pathlib import Path

from alive_worker import spi

LIVE = Path(__file__).with_name("live_plans")

def hook(tick):
    # Neither freed nor executed: dropped at once, or left to the tick.
    spi.prepare("SELECT $1::int", ["int"], keep={keep})
    if tick.number % 10_000 == 0:
        LIVE.write_text(str(spi.live_plans()))
""",
    )
    cluster = make_cluster(
        settings={"hook": hook, "back_to_back": "on"},
        setup_sql=["ALTER SYSTEM SET log_min_messages = 'log'"],
    )
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(10_000, timeout=120)
    early = used_memory(cluster, pid)
    wait_for(
        lambda: cluster.sql("SELECT max(pk) FROM log_table")[0][0] >= 110_000,
        "100,000 more ticks",
        timeout=300,
    )
    late = used_memory(cluster, pid)
    # A leaked plan costs at least 1 kB: 100,000 of them would be 100 MB.
    assert late - early < 2_000_000, f"{early} bytes after 10,000 ticks, {late} after 110,000"
    # The bridge's own count: the heartbeat's INSERT, this tick's plan, maybe the last one's.
    assert int((tmp_path / "live_plans").read_text()) <= 3
    assert cluster.worker_pid() == pid


# ---- the heartbeat stands alone ----


def test_a_hook_that_raises_every_tick_is_logged_once_counted_and_heartbeats_go_on(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
def hook(tick):
    raise ValueError(f"broken hook at tick {tick.number}")
""",
    )
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED})
    rows = cluster.wait_for_heartbeats(10)
    assert [m for _, m in rows[:10]] == [f"{MESSAGE} {n}" for n in range(1, 11)]
    log = cluster.log()
    first = "WARNING:  alive_worker hook failed: ValueError: broken hook at tick 1"
    assert first in log
    # Reported in full once, with its traceback; the others differ in their message.
    assert log.count("Traceback (most recent call last)") >= 1
    assert f'alive_worker.hook = "{hook}", tick 1' in log
    row = status(cluster)
    assert isinstance(row["hook_failures"], int) and row["hook_failures"] >= 9
    assert "ValueError: broken hook at tick" in str(row["last_hook_error"])
    assert row["last_hook_error_at"] is not None
    assert row["hook_ms_p50"] is not None and row["hook_ms_p99"] is not None
    assert row["ticks_failed"] == 0


def test_a_repeated_hook_failure_is_reported_once(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(tmp_path, "def hook(tick):\n    raise ValueError('always the same')\n")
    # Unhurried: a host's start that outlasts the 100 ms tick timeout on a busy
    # machine fails tick 1's hook with a traceback of its own.
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED})
    cluster.wait_for_heartbeats(10)
    log = cluster.log()
    assert log.count("WARNING:  alive_worker hook failed: ValueError: always the same") == 1
    assert log.count("Traceback (most recent call last)") == 1


def test_hook_failure_fail_tick_rolls_back_the_heartbeat_as_before(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(tmp_path, "def hook(tick):\n    raise ValueError('my check failed')\n")
    cluster = make_cluster(settings={"hook": hook, "hook_failure": "fail_tick"})
    cluster.wait_for_log(r"ERROR:  alive_worker hook failed: ValueError: my check failed")
    row = wait_for(lambda: row if (row := status(cluster))["hook_failures"] >= 3 else None, "three failures")
    assert cluster.heartbeats() == []
    assert row["ticks_ok"] == 0
    # Each failed hook failed its tick (counted just after the hook).
    assert row["ticks_failed"] >= row["hook_failures"] - 1


def test_a_hook_that_cannot_be_imported_does_not_block_the_heartbeat(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"hook": "no_such_module:hook"})
    # On a new cluster: the table is created, and heartbeats commit.
    cluster.wait_for_heartbeats(3)
    cluster.wait_for_log(
        r'WARNING:  alive_worker hook failed: HookError: alive_worker.hook = "no_such_module:hook": '
        r"cannot import no_such_module: ModuleNotFoundError"
    )
    assert isinstance(status(cluster)["hook_failures"], int)


def test_a_hooks_logs_and_errors_name_the_hook_and_the_tick(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
import logging

from alive_worker import spi

def hook(tick):
    logging.getLogger("my_hook").warning("checked the replicas")
    if tick.number == 2:
        spi.execute("SELECT 1 / 0")
""",
    )
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED})
    cluster.wait_for_heartbeats(3)
    log = cluster.log()
    assert re.search(
        rf'WARNING:  checked the replicas\n.*CONTEXT:  alive_worker.hook = "{re.escape(hook)}", tick 1', log
    )
    assert re.search(
        rf'WARNING:  division by zero\n(.*\n)*?.*alive_worker.hook = "{re.escape(hook)}", tick 2', log
    )
