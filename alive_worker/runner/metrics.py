"""The runner's own /metrics: what it knows that the server cannot say (it cannot connect, say).

Served on a port of its own (``metrics_listen``, loopback by default in the
examples), in a thread that only reads the runner's counters.  The series
carry the exporter's names (alive_worker.cli.metrics) where they mean the
same, so that the recording rules and alerts of ``alive-worker rules`` apply
to a runner as to a worker; alive_worker_up is 1 only while the last tick
committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alive_worker import __version__
from alive_worker.runner import state

if TYPE_CHECKING:
    from alive_worker.runner.loop import Runner


class RunnerCollector(Collector):
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        runner = self.runner
        counters = runner.counters
        db = ["database", "table"]
        labels = [
            runner.conn.info.dbname if runner.conn is not None and not runner.conn.closed else "",
            f"{runner.settings.schema}.{runner.settings.table}",
        ]
        info = GaugeMetricFamily(
            "alive_worker_runner_info",
            "alive-worker run: its version and server",
            labels=["version", "server"],
        )
        info.add_metric([__version__, counters.server], 1)
        yield info
        current = state.IN_THE_HOOK if runner.in_hook else counters.state
        up = GaugeMetricFamily(
            "alive_worker_up", "1 while the runner writes heartbeats (its last tick committed)", labels=db
        )
        writing = current in (state.SLEEPING, state.IN_THE_HOOK) and runner.previous_committed
        up.add_metric(labels, 1 if writing else 0)
        yield up
        states = GaugeMetricFamily(
            "alive_worker_state", "The runner's state (1 for the current one)", labels=[*db, "state"]
        )
        for name in state.STATES:
            states.add_metric([*labels, name], 1 if name == current else 0)
        yield states
        if counters.in_recovery is not None:
            recovery = GaugeMetricFamily(
                "alive_worker_in_recovery", "1 if the server the runner is connected to is a standby"
            )
            recovery.add_metric([], 1 if counters.in_recovery else 0)
            yield recovery
        if counters.last_ok_at is not None:
            last = GaugeMetricFamily(
                "alive_worker_last_heartbeat_timestamp_seconds",
                "When the last heartbeat committed",
                labels=db,
            )
            last.add_metric(labels, counters.last_ok_at)
            yield last
        interval = GaugeMetricFamily(
            "alive_worker_tick_interval_seconds", "The interval between heartbeats", labels=db
        )
        interval.add_metric(labels, runner.settings.interval / 1000)
        yield interval
        ticks = CounterMetricFamily("alive_worker_ticks", "Ticks by result", labels=[*db, "result"])
        for result, count in (
            ("ok", counters.ticks_ok),
            ("failed", counters.ticks_failed),
            ("skipped", counters.ticks_skipped),
        ):
            ticks.add_metric([*labels, result], count)
        yield ticks
        hooks = CounterMetricFamily("alive_worker_hook_failures", "Ticks whose hook failed", labels=db)
        hooks.add_metric(labels, counters.hook_failures)
        yield hooks
        failures = GaugeMetricFamily(
            "alive_worker_connect_failures", "Failed attempts to connect since the last success", labels=db
        )
        failures.add_metric(labels, counters.connect_failures)
        yield failures
        since = GaugeMetricFamily(
            "alive_worker_state_since_timestamp_seconds", "When the runner entered its state", labels=db
        )
        since.add_metric(labels, counters.state_since)
        yield since
        now = GaugeMetricFamily(
            "alive_worker_runner_scrape_timestamp_seconds", "The runner's clock at this scrape"
        )
        now.add_metric([], time.time())
        yield now


def serve(listen: str, runner: Runner) -> None:
    """Starts serving /metrics on listen (ADDRESS:PORT) in a daemon thread."""
    address, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunnerCollector(runner))
    start_http_server(int(port), addr=address.strip("[]") or "127.0.0.1", registry=registry)
