"""Synchronous replication: a heartbeat counts only once it is as durable as clients' commits."""

from __future__ import annotations

from collections.abc import Callable

from conftest import Cluster, wait_for
from test_cli import as_json, cli, dsn
from test_status import wait_for_state, workers

NOT_CONFIRMED = "heartbeat not confirmed by a synchronous standby"


def test_commit_waiting_for_a_missing_standby_is_a_failed_tick(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"interval": "200ms"},
        setup_sql=["ALTER SYSTEM SET synchronous_standby_names = 'nobody'"],
        extension=True,
    )
    # While the commit waits, the view says for what, and since when.
    waiting = wait_for_state(cluster, "waiting for synchronous standby")
    assert "synchronous_standby_names = 'nobody'" in waiting["state_detail"]
    assert waiting["state_since"] is not None and waiting["state_since"] >= waiting["last_tick_at"]

    [row] = wait_for(
        lambda: r if (r := workers(cluster))[0]["ticks_failed"] >= 5 else None,
        "five failed ticks",
        timeout=30,
    )
    # Each heartbeat was committed locally, but no tick is OK.
    assert cluster.sql("SELECT count(*) FROM public.log_table")[0][0] >= 5
    assert row["ticks_ok"] == 0 and row["last_ok_at"] is None
    assert row["last_error_sqlstate"] == "57014"
    assert row["last_error_message"].startswith(NOT_CONFIRMED)
    # The commit waited until the tick timeout (the interval, 200 ms) cancelled it.
    assert row["last_commit_ms"] >= 100

    # The failure is logged once, then summarised; PostgreSQL's own WARNING, which would repeat at
    # every tick, is not logged at all.
    log = cluster.log()
    reported = [line for line in log.splitlines() if "ERROR:" in line or "WARNING:" in line]
    assert log.count(f"ERROR:  {NOT_CONFIRMED}") == 1, reported
    assert "canceling wait for synchronous replication" not in log

    status = cli("status", "--dsn", dsn(cluster))
    assert status.returncode == 2, status.stdout
    assert status.stdout.startswith("CRITICAL: ")
    assert NOT_CONFIRMED in status.stdout
    assert as_json(cli("status", "--json", "--dsn", dsn(cluster)))["status"] == "CRITICAL"

    # Once commits need no standby, heartbeats are OK again.
    cluster.mark_log()
    with cluster.connect() as conn:
        conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")
    cluster.wait_for_log(r"alive_worker heartbeats resumed after \d+ failed ticks")
    [row] = wait_for(lambda: r if (r := workers(cluster))[0]["ticks_ok"] >= 2 else None, "OK ticks")
    assert row["last_commit_ms"] < 1000
    assert wait_for(lambda: r if (r := cli("status", "--dsn", dsn(cluster))).returncode == 0 else None, "OK")
