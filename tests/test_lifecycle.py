"""Start, SIGTERM and restart, as an operator sees them in ps and the log."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from conftest import MESSAGE, Cluster, wait_for

RESTART_DELAY_SECONDS = 5


def test_process_title_names_the_worker(cluster: Cluster) -> None:
    pid = cluster.wait_for_worker()
    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert "alive worker" in title
    assert title.startswith("postgres")


def test_sigterm_stops_cleanly_without_restart(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(3)
    cluster.mark_log()

    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: cluster.worker_pid() is None, "the worker to exit", timeout=2)
    cluster.wait_for_log(r"LOG:  alive_worker stopping: received SIGTERM after writing \d+ heartbeats")
    cluster.wait_for_log(rf'background worker "alive worker" \(PID {pid}\) exited with exit code 0')

    written = len(cluster.heartbeats())
    time.sleep(RESTART_DELAY_SECONDS + 1.5)
    assert cluster.worker_pid() is None, "a worker stopped by SIGTERM must stay stopped"
    assert len(cluster.heartbeats()) == written
    assert "exited with exit code 1" not in cluster.new_log()


def test_counter_starts_at_one_after_restart(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.wait_for_heartbeats(3)
    cluster.node.restart()

    # The first run may have stopped at 3 too: wait for a second run's 1 first.
    def second_run_at_three() -> list[tuple[int, str]] | None:
        rows = cluster.heartbeats()
        messages = [message for _, message in rows]
        return rows if messages.count(f"{MESSAGE} 1") == 2 and messages[-1] == f"{MESSAGE} 3" else None

    rows = wait_for(second_run_at_three, "three heartbeats after the restart")
    numbers = [int(message.split()[-1]) for _, message in rows]
    before = numbers.index(1, 1)  # where the second run begins
    assert numbers == [*range(1, before + 1), 1, 2, 3]


def test_start_and_stop_are_logged(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.wait_for_heartbeats(1)
    user = cluster.node.os_ops.username
    expected = f'LOG:  alive_worker started: database "postgres", role "{user}", table public.log_table, interval 100 ms'
    assert expected in cluster.log()
    cluster.node.stop()
    assert "LOG:  alive_worker stopping: received SIGTERM" in cluster.log()
