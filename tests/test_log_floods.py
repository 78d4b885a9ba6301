"""A failure that repeats every tick is reported once, summarised, and its end said."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import UNHURRIED, Cluster


def test_repeating_failure_is_reported_once_then_its_end(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"role": "luca", "interval": "20ms", **UNHURRIED}, setup_sql=["CREATE ROLE luca LOGIN"]
    )
    cluster.wait_for_log(r"ERROR:  alive_worker cannot create log table")
    time.sleep(2)  # about a hundred failed ticks
    log = cluster.new_log()
    assert log.count("ERROR:  alive_worker cannot create log table") == 1
    cluster.sql("GRANT CREATE ON SCHEMA public TO luca")
    match = cluster.wait_for_log(r"LOG:  alive_worker heartbeats resumed after (\d+) failed ticks")
    assert int(match.group(1)) > 20
    cluster.wait_for_heartbeats(2)


def test_a_different_failure_is_reported_in_full(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"role": "luca", "interval": "20ms", **UNHURRIED}, setup_sql=["CREATE ROLE luca LOGIN"]
    )
    cluster.wait_for_log(r"ERROR:  alive_worker cannot create log table")
    cluster.sql("CREATE TABLE log_table (pk serial PRIMARY KEY, message text)")
    cluster.wait_for_log(r'ERROR:  permission denied: role "luca" lacks INSERT on table public\.log_table')
    time.sleep(1)
    assert cluster.new_log().count('ERROR:  permission denied: role "luca" lacks INSERT') == 1
