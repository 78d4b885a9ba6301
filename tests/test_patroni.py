"""A Patroni cluster (etcd, two nodes on 127.0.0.1) with the worker preloaded through Patroni.

Switchover with patronictl, failover by losing the leader's node (its Patroni
and postmaster killed together), the old leader rejoining with pg_rewind
allowed.  After each: heartbeats on the new leader and none attempted on the
replica (whose worker waits for a promotion), lag() about zero there, and alive-worker status with a multi-host
target_session_attrs=read-write DSN finding the leader.  Slower than the
rest (about a minute; the ttl, 20 s, bounds the failover), marked `ha`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN_DIR, wait_for
from patroni_cluster import TTL, Node, PatroniCluster, two_node_cluster

pytestmark = pytest.mark.ha

CLI = Path(BIN_DIR) / "alive-worker"


@pytest.fixture
def patroni(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PatroniCluster]:
    yield from two_node_cluster(request, tmp_path / "ha", BIN_DIR, {"alive_worker.interval": "100ms"})


def worker_pid(node: Node) -> int | None:
    """The worker's process, on a leader ticking, on a replica waiting for promotion."""
    rows = node.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'alive worker'")
    return int(rows[0][0]) if rows else None


def last_pk(node: Node) -> int:
    return int(node.sql("SELECT coalesce(max(pk), 0) FROM public.log_table")[0][0])


def status_via_cli(cluster: PatroniCluster) -> dict[str, Any]:
    dsn = cluster.multi_host_dsn(target_session_attrs="read-write", connect_timeout="3")
    result = subprocess.run(
        [str(CLI), "status", "--json", "--dsn", dsn], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout))


def small_lag(replica: Node) -> tuple[Any, ...] | None:
    """lag() and upstream, once the lag is under half a second."""
    row = replica.sql("SELECT lag, upstream FROM alive_worker.lag()")[0]
    return row if row[0] is not None and row[0].total_seconds() < 0.5 else None


def check_replica(leader: Node, replica: Node, before: int) -> None:
    """No worker on the replica, the leader's heartbeats replayed, lag() about zero."""
    # The worker waits there, ready for a promotion, and writes nothing.
    pid = wait_for(lambda: worker_pid(replica), f"the worker waiting on the replica {replica.name}", 20)
    assert replica.sql("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]) == [
        ("waiting for recovery to end",)
    ]
    assert replica.sql("SELECT state, pid FROM alive_worker.workers") == [
        ("waiting for recovery to end", pid)
    ]
    wait_for(lambda: last_pk(replica) >= before + 5, f"heartbeats replayed on {replica.name}", 20)
    reading = wait_for(lambda: small_lag(replica), f"lag() about zero on {replica.name}", 20)
    assert reading[1].endswith(f":{leader.port}"), reading
    # Never tried to write: no failed tick in its log, ever.
    log = replica.pg_log()
    assert "read-only transaction" not in log
    assert "alive_worker tick" not in log


def check_roles(cluster: PatroniCluster, leader: Node, replicas: list[Node]) -> None:
    """Heartbeats on the leader only; the replicas stream them with lag about zero."""
    before = last_pk(leader)
    pid = wait_for(lambda: worker_pid(leader), f"the worker on the leader {leader.name}", 20)
    wait_for(lambda: last_pk(leader) >= before + 5, f"new heartbeats on the leader {leader.name}", 20)
    [(state,)] = leader.sql("SELECT state FROM alive_worker.workers")
    assert state in ("sleeping", "ticking"), state

    for replica in replicas:
        check_replica(leader, replica, before)

    report = status_via_cli(cluster)
    assert report["status"] == "OK", report
    assert report["server"]["in_recovery"] is False
    assert report["server"]["connection"].startswith(f"127.0.0.1:{leader.port},"), report["server"]
    assert [worker["pid"] for worker in report["workers"]] == [pid]


def test_heartbeats_follow_the_leader_through_switchover_failover_and_rejoin(patroni: PatroniCluster) -> None:
    cluster = patroni
    first = cluster.start()
    second = next(node for node in cluster.nodes if node is not first)
    first.sql("CREATE EXTENSION alive_worker")
    check_roles(cluster, first, [second])

    # Switchover: the leader hands over cleanly and follows the new one.
    result = cluster.switchover(first, second)
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.wait_for_roles() is second
    check_roles(cluster, second, [first])

    # Failover: the leader's node is lost; the replica takes over once the
    # leader key expires.
    second.kill()
    wait_for(lambda: first.role() == "primary", "the replica to take over", 3 * TTL + 30)
    check_roles(cluster, first, [])

    # The lost node comes back and rejoins as a replica on the new timeline.
    second.start()
    assert cluster.wait_for_roles(timeout=90) is first
    timelines = {node.name: (node.patroni_state() or {}).get("timeline") for node in cluster.nodes}
    assert timelines[first.name] == timelines[second.name], timelines
    check_roles(cluster, first, [second])
