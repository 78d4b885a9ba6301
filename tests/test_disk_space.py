"""Free space of the file systems the server writes to, in the view and in alive-worker status."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Cluster, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_cli import as_json, cli, dsn
from test_clients_see import the_worker


def test_view_and_status_show_the_fullest_file_system(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    row = wait_for(
        lambda: r if (r := the_worker(cluster))["disk_free_bytes"] is not None else None, "disk read"
    )
    data = os.statvfs(cluster.node.data_dir)
    assert row["disk_size_bytes"] == data.f_blocks * data.f_frsize
    # Read at the last tick: the machine's other writers move it a little meanwhile.
    assert abs(row["disk_free_bytes"] - data.f_bavail * data.f_frsize) < 256 * 1024 * 1024
    assert row["disk_free_where"] in (cluster.node.data_dir, "pg_wal")

    ok = as_json(
        cli("status", "--json", "--disk-warn", "0.0001", "--disk-crit", "0.00001", "--dsn", dsn(cluster))
    )
    assert ok["status"] == "OK", ok
    percent = 100.0 * row["disk_free_bytes"] / row["disk_size_bytes"]
    full = as_json(
        cli("status", "--json", "--disk-crit", f"{min(percent + 5, 100):g}", "--dsn", dsn(cluster))
    )
    assert full["status"] == "CRITICAL", full
    [worker] = full["workers"]
    assert worker["status_reason"].startswith("disk "), worker
    warned = as_json(
        cli(
            "status",
            "--json",
            "--disk-warn",
            f"{min(percent + 5, 100):g}",
            "--disk-crit",
            "0.00001",
            "--dsn",
            dsn(cluster),
        )
    )
    assert warned["status"] == "WARNING", warned


def test_metrics_show_the_disk_space(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    row = wait_for(
        lambda: r if (r := the_worker(cluster))["disk_free_bytes"] is not None else None, "disk read"
    )
    text = cli("metrics", "--dsn", dsn(cluster)).stdout
    samples = {
        sample.name: sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("alive_worker_disk_")
    }
    size = samples["alive_worker_disk_size_bytes"]
    assert size.value == row["disk_size_bytes"]
    assert size.labels["database"] == "postgres" and size.labels["where"] == row["disk_free_where"]
    assert abs(samples["alive_worker_disk_free_bytes"].value - row["disk_free_bytes"]) < 256 * 1024 * 1024


def free_share(path: str) -> float:
    fs = os.statvfs(path)
    return fs.f_bavail / fs.f_blocks


def test_a_tablespace_counts_and_the_fullest_is_by_share_not_bytes(
    make_cluster: Callable[..., Cluster],
) -> None:
    """A tablespace on another file system must not hide a fuller data directory from the percent thresholds."""
    cluster = make_cluster(extension=True)
    # The clusters are on /dev/shm when it has room (scripts/test-run), else on /tmp's.
    elsewhere = [
        place
        for place in ("/dev/shm", "/var/tmp", tempfile.gettempdir())
        if Path(place).is_dir()
        and os.access(place, os.W_OK)
        and os.stat(place).st_dev != os.stat(cluster.node.data_dir).st_dev
    ]
    if not elsewhere:
        pytest.skip(
            f"no file system but the data directory's among /dev/shm, /var/tmp and {tempfile.gettempdir()}"
        )
    location = Path(tempfile.mkdtemp(prefix="alive_worker-tablespace-", dir=elsewhere[0]))
    try:
        cluster.sql(f"CREATE TABLESPACE spare LOCATION '{location}'")
        data, spare = free_share(cluster.node.data_dir), free_share(str(location))
        fullest = str(location) if spare < data else cluster.node.data_dir
        row = wait_for(
            lambda: r if (r := the_worker(cluster))["disk_free_where"] in (fullest, "pg_wal") else None,
            f"the fullest file system, {fullest}",
        )
        # pg_wal is the data directory's file system, whose share other tests' clusters move when
        # the clusters are on /dev/shm: the size is that of the place the worker named.
        named = cluster.node.data_dir if row["disk_free_where"] == "pg_wal" else row["disk_free_where"]
        assert row["disk_size_bytes"] == os.statvfs(named).f_blocks * os.statvfs(named).f_frsize
        # Critical just above the fullest one's share: whichever it is, status sees it.
        percent = 100.0 * min(data, spare)
        report = as_json(cli("status", "--json", "--disk-crit", f"{percent + 2:g}", "--dsn", dsn(cluster)))
        assert report["status"] == "CRITICAL", report
    finally:
        shutil.rmtree(location, ignore_errors=True)
