"""Crashes of the worker and of the server: data kept, heartbeats resume, no crash loop."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest
from conftest import MESSAGE, Cluster, wait_for


def committed_rows(cluster: Cluster) -> list[tuple[int, str]]:
    return cluster.heartbeats()


@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_worker_crash_restarts_and_keeps_every_committed_row(
    make_cluster: Callable[..., Cluster], signal_number: int
) -> None:
    cluster = make_cluster()
    old_pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(5)
    before = committed_rows(cluster)

    os.kill(old_pid, signal_number)
    cluster.wait_for_log(r"terminating any other active server processes|was terminated by signal")
    new_pid = wait_for(
        lambda: pid if (pid := cluster.worker_pid()) not in (None, old_pid) else None, "a new worker"
    )
    assert new_pid != old_pid

    rows = cluster.wait_for_heartbeats(len(before) + 3)
    assert rows[: len(before)] == before, "rows committed before the crash must survive exactly once"
    pks = [pk for pk, _ in rows]
    assert len(pks) == len(set(pks))
    numbers_after = [int(m.split()[-1]) for _, m in rows[len(before) :]]
    # The restarted worker may have committed rows the first query missed; its own counter starts at 1.
    assert 1 in numbers_after


def test_crash_loop_guard_disables_the_worker_and_a_reload_lifts_it(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"crash_limit": "3", "crash_window": "10min"})
    for _ in range(3):
        pid = cluster.wait_for_worker(timeout=20)
        cluster.mark_log()
        os.kill(pid, signal.SIGSEGV)
        cluster.wait_for_log(rf"\(PID {pid}\) was terminated by signal 11")
    cluster.wait_for_log(
        r"WARNING:  alive_worker disabled by its crash guard: the worker crashed 3 times within 600 s",
        timeout=20,
    )
    log = cluster.new_log()
    assert "HINT:  Fix the cause of the crashes" in log
    assert "alive_worker.crash_limit" in log
    # Idle: alive (so that it can be lifted), but writing nothing and not crashing.
    written = len(cluster.heartbeats())
    pid = cluster.wait_for_worker()
    wait_for(lambda: cluster.new_log().count("alive_worker disabled") == 1, "one warning")
    assert len(cluster.heartbeats()) == written

    cluster.mark_log()
    cluster.set(crash_limit="0")
    cluster.wait_for_log(r"alive_worker crash guard lifted by alive_worker.crash_limit = 0")
    cluster.wait_for_heartbeats(written + 2)
    assert cluster.worker_pid() == pid


def test_crash_of_another_backend_does_not_count_as_a_worker_crash(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"crash_limit": "1"})
    cluster.wait_for_heartbeats(2)
    for _ in range(2):
        with cluster.connect() as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            cluster.mark_log()
            os.kill(backend, signal.SIGKILL)
        cluster.wait_for_log(r"all server processes terminated; reinitializing")
        count = len(cluster.wait_for_heartbeats(1))
        cluster.wait_for_heartbeats(count + 2)
    assert "crash guard" not in cluster.log()


def test_immediate_shutdown_keeps_committed_heartbeats(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"interval": "10ms"})
    cluster.wait_for_heartbeats(50)
    before = committed_rows(cluster)
    cluster.node.stop(["-m", "immediate"])
    cluster.node.start()
    rows = cluster.wait_for_heartbeats(len(before) + 20)
    assert rows[: len(before)] == before
    assert len({pk for pk, _ in rows}) == len(rows)
    assert f"{MESSAGE} 1" in [m for _, m in rows[len(before) :]]
