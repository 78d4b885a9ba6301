"""alive-worker status on a standby judges what a standby is for: a WAL receiver, and lag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import Cluster, streaming_standby, wait_for
from test_cli import as_json, cli, dsn


def standby_status(standby: Cluster) -> dict[str, Any]:
    return dict(as_json(cli("status", "--json", "--dsn", dsn(standby))))


def test_standby_whose_primary_is_down_is_not_ok(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(extension=True)
    standby = streaming_standby(primary, make_standby)
    report = standby_status(standby)
    assert report["status"] == "OK", report
    assert report["server"]["wal_receiver"] is True

    primary.node.stop(["-m", "immediate"])
    # The walreceiver dies with its connection; lag grows past 10 intervals (1 s) meanwhile.
    report = wait_for(
        lambda: r if (r := standby_status(standby))["status"] == "CRITICAL" else None,
        "status CRITICAL on the standby",
    )
    [worker] = report["workers"]
    assert worker["state"] == "waiting for recovery to end"
    assert worker["status_reason"].startswith("replication lag "), worker["status_reason"]
    assert "more than 10 intervals" in worker["status_reason"]
