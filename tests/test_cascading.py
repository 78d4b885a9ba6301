"""Cascading replication: lag() on a standby of a standby is the lag from the primary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg.sql
from conftest import Cluster, streaming_standby, wait_for


def lag(cluster: Cluster) -> dict[str, Any]:
    columns, rows = cluster.query("SELECT * FROM alive_worker.lag()")
    return dict(zip(columns, rows[0], strict=True))


def seconds(reading: dict[str, Any]) -> float:
    return float(reading["lag"].total_seconds())


def test_lag_on_a_cascaded_standby_is_from_the_primary_and_names_its_upstream(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "200ms"}, extension=True)
    middle = streaming_standby(primary, make_standby)
    # pg_basebackup from the standby: the new one streams from it, not from the primary.
    last = streaming_standby(middle, make_standby)
    for standby in (middle, last):
        assert standby.sql("SELECT state FROM alive_worker.workers") == [("waiting for recovery to end",)]

    reading = wait_for(lambda: r if (r := lag(last))["receiver_status"] == "streaming" else None, "streaming")
    assert reading["upstream"].endswith(f":{middle.node.port}"), reading
    [(system_identifier,)] = primary.sql("SELECT system_identifier FROM pg_control_system()")
    assert reading["system_identifier"] == system_identifier
    wait_for(lambda: seconds(lag(last)) < 0.2, "lag about zero on the cascaded standby")

    # The middle standby stops receiving from the primary.  The last one is
    # still streaming, and up to date with its upstream, but as far behind
    # the primary as the middle one is: that is its lag.
    [(conninfo,)] = middle.sql("SHOW primary_conninfo")
    middle.sql("ALTER SYSTEM SET primary_conninfo = ''")
    middle.sql("SELECT pg_reload_conf()")
    behind = wait_for(
        lambda: r if seconds(r := lag(last)) > 1.5 else None, "1.5 s of lag on the last standby"
    )
    assert behind["receiver_status"] == "streaming" and behind["upstream"].endswith(f":{middle.node.port}")
    both = lag(middle), lag(last)
    assert abs(seconds(both[0]) - seconds(both[1])) < 0.3, both
    # The truth, from the primary: the first heartbeat the last standby lacks
    # has been waiting since it was written.
    [(first_missing,)] = primary.sql(
        "SELECT min(ts) AT TIME ZONE 'UTC' FROM public.log_table WHERE ts > %s AT TIME ZONE 'UTC'",
        [both[1]["last_heartbeat_at"]],
    )
    waiting = (both[1]["measured_at"] - first_missing).total_seconds()
    assert abs(seconds(both[1]) - waiting) < 0.1, (both[1], first_missing)

    with middle.connect() as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(psycopg.sql.Literal(conninfo))
        )
    middle.sql("SELECT pg_reload_conf()")
    wait_for(lambda: seconds(lag(last)) < 0.2, "lag back to about zero once the middle standby streams again")
