"""What the server's own views say about the worker, on each PostgreSQL major."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Cluster, wait_for

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"
# Registered by the worker on PostgreSQL 17 and later (alive_worker/_compat.h).
WAIT_EVENT_NAME = "AliveWorkerMain"


def test_sleeping_worker_names_its_wait_event(make_cluster: Callable[..., Cluster]) -> None:
    # A long interval: after its first tick the worker sleeps for a minute.
    cluster = make_cluster({"interval": "1min"})
    cluster.wait_for_heartbeats(1)
    # Older majors have one event for all extensions, named after its type.
    expected = WAIT_EVENT_NAME if cluster.server_version_num() >= 170000 else "Extension"
    waiting = wait_for(
        lambda: cluster.sql(
            "SELECT wait_event FROM pg_stat_activity"
            " WHERE backend_type = 'alive worker' AND wait_event_type = 'Extension'"
        ),
        "the worker to sleep between ticks",
    )
    assert waiting == [(expected,)]


def test_loaded_module_reports_its_name_and_version(cluster: Cluster) -> None:
    if cluster.server_version_num() < 180000:
        pytest.skip("modules report their name and version from PostgreSQL 18 on")
    version = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    rows = cluster.sql(
        "SELECT module_name, version FROM pg_get_loaded_modules() WHERE file_name LIKE 'alive_worker%'"
    )
    assert rows == [("alive_worker", version)]
