"""What the worker says in the server log at DEBUG1 and LOG."""

from __future__ import annotations

from conftest import MESSAGE, Cluster


def test_debug1_shows_each_loop_the_query_the_role_and_the_outcome(cluster: Cluster) -> None:
    cluster.wait_for_heartbeats(2)
    log = cluster.log()
    user = cluster.node.os_ops.username
    for line in (
        'DEBUG:  alive_worker registering background worker "alive worker postgres"',
        "DEBUG:  alive_worker starting worker_main",
        "DEBUG:  alive_worker in main loop",
        "DEBUG:  alive_worker executing query [INSERT INTO public.log_table (message) VALUES ($1)]"
        f" with [{MESSAGE} 1] as [{user}]",
        "DEBUG:  alive_worker query OK",
    ):
        assert line in log, line


def test_python_logging_reaches_the_server_log(cluster: Cluster) -> None:
    cluster.wait_for_heartbeats(1)
    # The table creation is logged by Python's logging at INFO, which maps to LOG.
    assert "LOG:  alive_worker created log table public.log_table" in cluster.log()
