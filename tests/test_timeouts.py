"""A locked or slow table: ticks give up after a bounded wait, and the schedule goes on."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import Cluster, wait_for


def test_locked_table_gives_up_after_the_tick_timeout_without_pile_up(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"interval": "200ms", "tick_timeout": "150ms"})
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(2)
    cluster.mark_log()
    with cluster.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE log_table IN ACCESS EXCLUSIVE MODE")
        time.sleep(2.0)  # ten intervals
        # Only the worker's own tick ever waits: no queue of waiting ticks.
        waiting = cluster.sql("SELECT count(*) FROM pg_locks WHERE NOT granted")
        assert waiting[0][0] <= 1
        locker.execute("ROLLBACK")
    log = cluster.new_log()
    assert log.count("ERROR:  canceling statement due to statement timeout") == 1, (
        "reported once, not per tick"
    )
    assert "DETAIL:  A tick may run until alive_worker.tick_timeout (150 ms) after it was due." in log
    count = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(count + 3)
    cluster.wait_for_log(r"LOG:  alive_worker heartbeats resumed after \d+ failed ticks")
    assert cluster.worker_pid() == pid


def test_default_timeout_is_the_interval(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"interval": "300ms"})
    cluster.wait_for_heartbeats(1)
    with cluster.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE log_table IN ACCESS EXCLUSIVE MODE")
        cluster.mark_log()
        started = time.monotonic()
        cluster.wait_for_log(r"ERROR:  canceling statement due to statement timeout")
        # Gave up within about one interval of the tick that hit the lock.
        assert time.monotonic() - started < 1.5
        locker.execute("ROLLBACK")
    wait_for(lambda: "heartbeats resumed" in cluster.new_log(), "heartbeats to resume")


def test_a_cancel_request_is_not_taken_for_the_timeout(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"interval": "200ms", "tick_timeout": "1min"})
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(1)
    with cluster.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE log_table IN ACCESS EXCLUSIVE MODE")
        cluster.wait_until_waiting(pid, "wait_event_type", "Lock", "the tick to wait for the lock")
        cluster.mark_log()
        cluster.sql("SELECT pg_cancel_backend(%s)", (pid,))
        cluster.wait_for_log(r"ERROR:  canceling statement due to user request")
        locker.execute("ROLLBACK")
    assert "statement timeout" not in cluster.new_log()
    wait_for(lambda: "heartbeats resumed" in cluster.new_log(), "heartbeats to resume")
    assert cluster.worker_pid() == pid
