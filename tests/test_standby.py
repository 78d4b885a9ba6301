"""On a hot standby the worker writes nothing; after promotion it starts, counting from 1."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import MESSAGE, Cluster, wait_for


def test_standby_never_writes_and_promotion_starts_heartbeats(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "1s"})
    primary.wait_for_heartbeats(2)
    standby = make_standby(primary)
    wait_for(lambda: len(standby.heartbeats()) >= 2, "heartbeats replayed on the standby")
    time.sleep(2.5)  # a few intervals, in which a worker would have tried to write
    assert standby.worker_pid() is None
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
