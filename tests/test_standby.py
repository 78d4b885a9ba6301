"""On a hot standby the worker waits, writing nothing; after promotion it ticks at once, counting from 1."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import MESSAGE, Cluster, wait_for


def test_standby_never_writes_and_promotion_starts_heartbeats(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "1s"}, extension=True)
    primary.wait_for_heartbeats(2)
    standby = make_standby(primary)
    wait_for(lambda: len(standby.heartbeats()) >= 2, "heartbeats replayed on the standby")
    # Started already, connected and with Python loaded, so that promotion
    # need not wait for any of that; but writing nothing.
    waiting = standby.wait_for_worker()
    standby.wait_for_log(r'alive_worker waiting for recovery to end: database "postgres"')
    time.sleep(2.5)  # a few intervals, in which a worker would have tried to write
    assert standby.sql("SELECT query FROM pg_stat_activity WHERE pid = %s", [waiting]) == [
        ("waiting for recovery to end",)
    ]
    assert standby.sql("SELECT state, pid FROM alive_worker.workers") == [
        ("waiting for recovery to end", waiting)
    ]
    log = standby.log()
    assert "read-only transaction" not in log
    assert "ERROR:  " not in log
    assert "alive_worker started" not in log

    primary.node.stop()
    replayed = standby.heartbeats()
    assert replayed and replayed[0][1] == f"{MESSAGE} 1"

    promoted_at = standby.sql("SELECT pg_promote(), clock_timestamp() AT TIME ZONE 'UTC'")[0][1]
    rows = standby.wait_for_heartbeats(len(replayed) + 2)
    assert rows[: len(replayed)] == replayed, "rows written before the standby was made must stay"
    assert [m for _, m in rows[len(replayed) : len(replayed) + 2]] == [f"{MESSAGE} 1", f"{MESSAGE} 2"]
    first_ts = standby.sql("SELECT ts FROM log_table WHERE pk = %s", [rows[len(replayed)][0]])[0][0]
    assert (first_ts - promoted_at).total_seconds() < 1.0, "heartbeats start within one interval"
    # The same process that waited writes them: nothing was started at promotion.
    assert standby.worker_pid() == waiting
    assert standby.sql("SELECT state, pid FROM alive_worker.workers")[0][1] == waiting


def test_without_hot_standby_the_worker_starts_at_promotion(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "200ms"})
    primary.wait_for_heartbeats(2)
    standby = make_standby(primary)
    standby.node.stop()
    standby.node.append_conf(hot_standby="off")
    standby.mark_log()
    standby.node.start(wait=False)
    standby.wait_for_log("entering standby mode")
    standby.wait_for_log("started streaming WAL from primary")
    time.sleep(1)  # in which a worker started in recovery would have said so
    assert "alive_worker starting worker_main" not in standby.new_log()
    assert "alive_worker waiting for recovery to end" not in standby.new_log()
    standby.node.promote()

    def counting_again() -> list[str] | None:
        """The messages from the promoted server's own first heartbeat (the primary's counted from 1 too)."""
        messages = [m for _, m in standby.heartbeats()]
        starts = [i for i, m in enumerate(messages) if m == f"{MESSAGE} 1"]
        return messages[starts[1] :] if len(starts) >= 2 and len(messages) > starts[1] + 1 else None

    assert wait_for(counting_again, "heartbeats of the promoted server")[:2] == [
        f"{MESSAGE} 1",
        f"{MESSAGE} 2",
    ]
    assert "alive_worker started" in standby.new_log()
    assert "alive_worker waiting for recovery to end" not in standby.new_log()
