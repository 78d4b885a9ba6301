"""Under a pgbench write load on the same cluster, heartbeats keep coming without errors."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from conftest import BIN_DIR, Cluster

LOAD_SECONDS = 30


# Alone: pgbench takes both cores, and the gaps between heartbeats are
# measured under that load, not under the suite's.
@pytest.mark.alone
def test_heartbeats_keep_coming_under_pgbench_load(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.wait_for_heartbeats(1)
    connection = ["-h", cluster.node.host, "-p", str(cluster.node.port), "-U", cluster.node.os_ops.username]
    subprocess.run(
        [f"{BIN_DIR}/pgbench", "-i", "-q", "-s", "2", *connection, "postgres"],
        check=True,
        capture_output=True,
    )
    cluster.mark_log()
    before = len(cluster.heartbeats())
    bench = subprocess.run(
        [f"{BIN_DIR}/pgbench", "-c", "4", "-j", "2", "-T", str(LOAD_SECONDS), "-n", *connection, "postgres"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "number of failed transactions: 0" in bench.stdout
    during = cluster.sql(
        "SELECT max(gap), count(*) FROM (SELECT extract(epoch FROM ts - lag(ts) OVER (ORDER BY pk)) AS gap"
        " FROM log_table WHERE pk > %s) gaps",
        [before],
    )[0]
    longest_gap, count = float(during[0]), during[1]
    # Ten a second at 100 ms: allow for a 2-core machine saturated by pgbench.
    assert count > LOAD_SECONDS * 10 * 0.7, count
    assert longest_gap < 1.0, longest_gap
    assert "ERROR:  " not in cluster.new_log()
