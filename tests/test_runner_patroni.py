"""alive-worker run through a Patroni switchover, on nodes without our library (as a managed service's).

The set-up is tests/patroni_cluster.py's (etcd, two nodes on 127.0.0.1),
with shared_preload_libraries empty and no extension; the runner connects as
a role holding INSERT and sequence USAGE only, through a multi-host
target_session_attrs=read-write DSN.  After a patronictl switchover it
writes on the new leader with its numbering going on, and status says so
there.  Marked `ha`, as test_patroni.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BIN_DIR, MESSAGE, wait_for
from patroni_cluster import Node, PatroniCluster, two_node_cluster

pytestmark = pytest.mark.ha

CLI = Path(BIN_DIR) / "alive-worker"


@pytest.fixture
def patroni(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PatroniCluster]:
    yield from two_node_cluster(request, tmp_path / "ha", BIN_DIR, {"shared_preload_libraries": ""})


def numbers(node: Node) -> list[int]:
    rows = node.sql("SELECT message FROM public.log_table ORDER BY pk")
    return [int(str(message).removeprefix(f"{MESSAGE} ")) for (message,) in rows]


def test_the_runner_follows_the_leader_through_a_patroni_switchover(
    patroni: PatroniCluster, tmp_path: Path
) -> None:
    cluster = patroni
    first = cluster.start()
    second = next(node for node in cluster.nodes if node is not first)
    assert first.sql("SHOW shared_preload_libraries") == [("",)]
    for statement in (
        "CREATE ROLE luca LOGIN",
        "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())",
        "GRANT INSERT ON public.log_table TO luca",
        "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO luca",
    ):
        first.sql(statement)
    dsn = cluster.multi_host_dsn(target_session_attrs="read-write", connect_timeout="3").replace(
        f"user={cluster.user}", "user=luca"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ALIVE_WORKER_"))}
    log_path = tmp_path / "runner.log"
    runner = subprocess.Popen(
        [str(CLI), "run", "--dsn", dsn, "--interval", "100ms", "--message", MESSAGE],
        stderr=log_path.open("w"),
        env=clean,
    )
    try:
        wait_for(lambda: len(numbers(first)) >= 5, "heartbeats on the first leader", 30)
        result = cluster.switchover(first, second)
        assert result.returncode == 0, result.stdout + result.stderr
        assert cluster.wait_for_roles() is second
        before = len(numbers(second))
        after = wait_for(
            lambda: n if len(n := numbers(second)) >= before + 10 else None,
            "heartbeats on the new leader",
            60,
        )
        assert runner.poll() is None, log_path.read_text()
        # One runner, one numbering, on through the switchover: no number twice, none going back.
        assert after == sorted(set(after)), after
        status = subprocess.run(
            [str(CLI), "status", "--runner", "--dsn", cluster.multi_host_dsn(target_session_attrs="read-write")],
            capture_output=True, text=True, timeout=60, env=clean,
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.match(r"OK: 1 sleeping \(alive-worker run on PostgreSQL", status.stdout)
        assert f"127.0.0.1:{second.port}" in status.stdout
    finally:
        runner.terminate()
        runner.wait(timeout=10)
        print("---- runner ----\n" + log_path.read_text()[-4000:])
