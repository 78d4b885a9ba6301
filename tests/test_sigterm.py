"""SIGTERM at any moment: prompt exit 0, no restart, the tick in flight all or nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from conftest import Cluster, wait_for, write_hook

PROMPT_SECONDS = 1.0


def terminate_and_time(cluster: Cluster, pid: int) -> float:
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the worker to exit", timeout=5)
    elapsed = time.monotonic() - started
    cluster.wait_for_log(rf'background worker "alive worker" \(PID {pid}\) exited with exit code 0')
    return elapsed


def test_sigterm_during_sleep_is_prompt(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"interval": "1h"})
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(1)
    assert terminate_and_time(cluster, pid) < PROMPT_SECONDS


def test_sigterm_during_a_slow_tick_rolls_it_back(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

def hook(tick):
    if tick.number == 2:
        spi.execute("INSERT INTO public.notes VALUES ('partial')")
        spi.execute("SELECT pg_sleep(30)")
""",
    )
    cluster = make_cluster(
        settings={"hook": hook, "tick_timeout": "1min"}, setup_sql=["CREATE TABLE notes (note text)"]
    )
    pid = cluster.wait_for_worker()
    cluster.wait_until_waiting(pid, "wait_event", "PgSleep", "the second tick to sleep")
    assert terminate_and_time(cluster, pid) < PROMPT_SECONDS
    assert [m for _, m in cluster.heartbeats()] == ["STILL ALIVE and counting! 1"]
    assert cluster.sql("SELECT count(*) FROM notes") == [(0,)]
    assert "alive_worker tick in flight cancelled by SIGTERM and rolled back" in cluster.log()


def test_sigterm_during_a_tick_blocked_on_a_lock(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"tick_timeout": "1min"})
    cluster.wait_for_heartbeats(2)
    with cluster.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE log_table IN ACCESS EXCLUSIVE MODE")
        pid = cluster.wait_for_worker()
        cluster.wait_until_waiting(pid, "wait_event_type", "Lock", "the tick to wait for the lock")
        assert terminate_and_time(cluster, pid) < PROMPT_SECONDS
        locker.execute("ROLLBACK")
    time.sleep(6.5)  # past the restart delay
    assert cluster.worker_pid() is None


def test_fast_shutdown_is_not_held_up_by_a_blocked_tick(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"tick_timeout": "1min"})
    cluster.wait_for_heartbeats(1)
    locker = cluster.connect()
    locker.execute("BEGIN")
    locker.execute("LOCK TABLE log_table IN ACCESS EXCLUSIVE MODE")
    pid = cluster.wait_for_worker()
    cluster.wait_until_waiting(pid, "wait_event_type", "Lock", "the tick to wait for the lock")
    started = time.monotonic()
    stopper = threading.Thread(target=lambda: cluster.node.stop(["-m", "fast"]))
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive()
    assert time.monotonic() - started < 5
    locker.close()
