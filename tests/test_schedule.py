"""The schedule: ticks on wall-clock multiples of the interval, and the benchmarks' back-to-back mode."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import MESSAGE, Cluster, wait_for

INTERVAL_US = 200_000


def tick_phases_us(cluster: Cluster) -> list[int]:
    """Where each tick's start falls within its interval, all but the first (which is at start)."""
    rows = cluster.sql(
        "SELECT (extract(epoch FROM ts) * 1e6)::bigint %% %s FROM log_table WHERE pk > 1 ORDER BY pk",
        [INTERVAL_US],
    )
    return [int(phase) for (phase,) in rows]


def test_aligned_ticks_fall_on_wall_clock_multiples_of_the_interval(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster({"interval": "200ms", "clock_aligned": "on"})
    cluster.wait_for_heartbeats(6)
    phases = tick_phases_us(cluster)
    # Each tick starts just after a multiple of 200 ms; unaligned, the phases
    # would be wherever the worker happened to start.  Half an interval is
    # room enough for a loaded machine.
    assert phases and all(phase < INTERVAL_US / 2 for phase in phases), phases


def test_alignment_follows_a_reload(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster({"interval": "200ms"})
    cluster.wait_for_heartbeats(2)
    cluster.set(clock_aligned="on")
    time.sleep(0.5)
    before = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(before + 5)
    rows = cluster.sql(
        "SELECT (extract(epoch FROM ts) * 1e6)::bigint %% %s FROM log_table WHERE pk > %s ORDER BY pk",
        [INTERVAL_US, before],
    )
    assert all(int(phase) < INTERVAL_US / 2 for (phase,) in rows), rows


def count_if_settled(cluster: Cluster) -> int | None:
    """The number of heartbeats, if it stays the same for half a second."""
    count = len(cluster.heartbeats())
    time.sleep(0.5)
    return count if len(cluster.heartbeats()) == count else None


def test_back_to_back_ticks_ignore_the_interval_and_count_on(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster({"interval": "1h"})
    cluster.wait_for_heartbeats(1)
    cluster.set(back_to_back="on")
    # An hour's interval, yet ticks keep coming, each its own transaction.
    rows = cluster.wait_for_heartbeats(200, timeout=30)
    numbers = [int(message.removeprefix(f"{MESSAGE} ")) for _, message in rows]
    assert numbers == list(range(1, len(rows) + 1))
    xids = cluster.sql("SELECT count(DISTINCT xmin::text) = count(*) FROM log_table")
    assert xids == [(True,)]

    # Back to the interval: the next tick is an hour away, counted from the last.
    cluster.reset("back_to_back")
    settled = wait_for(lambda: count_if_settled(cluster), "back-to-back ticks to stop")
    time.sleep(1.0)
    assert len(cluster.heartbeats()) == settled
    assert "ERROR" not in cluster.log()
