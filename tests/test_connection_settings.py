"""Wrong database or role: one clear line naming the setting, retried with backoff."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime

import pytest
from conftest import Cluster, wait_for

CASES = {
    "missing database": (
        {"database": "nowhere"},
        [],
        r'FATAL:  database "nowhere" does not exist\n.*CONTEXT:  alive_worker connecting to database "nowhere" \(alive_worker.database\)',
    ),
    "missing role": (
        {"role": "nobody"},
        [],
        r'FATAL:  role "nobody" does not exist\n.*CONTEXT:  alive_worker connecting to database "postgres" \(alive_worker.database\) as alive_worker.role = "nobody"',
    ),
    "role without LOGIN": (
        {"role": "nologin"},
        ["CREATE ROLE nologin NOLOGIN"],
        r'FATAL:  role "nologin" is not permitted to log in\n.*CONTEXT:  alive_worker connecting .* alive_worker.role = "nologin"',
    ),
    "database not accepting connections": (
        {"database": "closed"},
        ["CREATE DATABASE closed", "ALTER DATABASE closed ALLOW_CONNECTIONS false"],
        r'FATAL:  database "closed" is not currently accepting connections\n.*CONTEXT:  alive_worker connecting to database "closed" \(alive_worker.database\)',
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_connection_setting_is_named_and_the_cluster_is_unaffected(
    make_cluster: Callable[..., Cluster], case: str
) -> None:
    settings, setup_sql, complaint = CASES[case]
    cluster = make_cluster(settings=settings, setup_sql=setup_sql)
    cluster.wait_for_log(complaint)
    # The rest of the cluster works, and was never reset.
    assert cluster.sql("SELECT 1") == [(1,)]
    assert "terminating any other active server processes" not in cluster.log()


def test_failed_connections_back_off(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"database": "nowhere"})
    failure = 'FATAL:  database "nowhere" does not exist'
    wait_for(lambda: cluster.log().count(failure) >= 3, "three connection attempts", timeout=30)
    cluster.wait_for_log(
        r"LOG:  alive_worker waiting 5 s more before connecting again, after 2 failed attempts"
    )
    attempts = [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
        for line in cluster.log().splitlines()
        if failure in line
    ]
    first_gap, second_gap = ((b - a).total_seconds() for a, b in itertools.pairwise(attempts[:3]))
    # The restart delay, then twice that.
    assert 4 < first_gap < 7
    assert 9 < second_gap < 12
