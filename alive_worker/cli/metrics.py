"""alive-worker metrics and exporter: the workers' status in Prometheus' text exposition format.

`metrics` prints one scrape (or writes it atomically with --output, for
node_exporter's textfile collector); `exporter` serves the same on /metrics
over HTTP, reading the servers afresh at every scrape.  Both read what
`alive-worker status` reads: the alive_worker.workers view, and on a
standby alive_worker.lag().  Every series is labelled by database, and by
server when several --dsn are watched.

A server that cannot be read still answers, with
alive_worker_scrape_success 0 and no other series for it: a stale file or a
failed scrape never passes for a healthy worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import psycopg
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import sql

from alive_worker import __version__, states
from alive_worker.cli import _runners
from alive_worker.cli._common import (
    CliError,
    Connection,
    Extension,
    Status,
    Style,
    connect,
    installed_extension,
    require_extension,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the workers' status in Prometheus' text exposition format.  Exits 0, or 3 if a server "
        "could not be read (its alive_worker_scrape_success is then 0)."
    )
    add_dsn_arguments(parser)
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write to FILE atomically (a temporary file renamed over it), e.g. for node_exporter's "
        "textfile collector: --output /var/lib/prometheus/node-exporter/alive_worker.prom",
    )


def add_exporter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the workers' status on http://ADDRESS:PORT/metrics for Prometheus, reading the servers "
        "at every scrape."
    )
    add_dsn_arguments(parser)
    parser.add_argument(
        "--listen",
        default="127.0.0.1:9187",
        metavar="ADDRESS:PORT",
        help="where to listen (default 127.0.0.1:9187)",
    )


def add_dsn_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--also-dsn",
        action="append",
        default=[],
        metavar="DSN",
        help="another server to read besides --dsn (repeatable); series then carry a server label",
    )


def dsns(args: argparse.Namespace) -> list[str]:
    return [args.dsn, *args.also_dsn]


class WorkersCollector(Collector):
    """Reads every server at each collect(): one scrape's worth of metric families."""

    def __init__(self, dsn_list: Sequence[str]) -> None:
        self.dsn_list = list(dsn_list)
        self.failures = 0

    def collect(self) -> Iterator[Metric]:
        labelled = len(self.dsn_list) > 1
        extra = ["server"] if labelled else []
        families = Families(extra)
        self.failures = 0
        for dsn in self.dsn_list:
            server = server_name(dsn)
            labels = [server] if labelled else []
            try:
                with connect(dsn) as conn:
                    read_server(conn, families, labels)
            except Exception as error:
                # Whatever one server sends, the others are still scraped.
                self.failures += 1
                if isinstance(error, CliError):
                    message = error.message
                elif isinstance(error, psycopg.Error):
                    message = str(error).strip()
                else:
                    message = f"unexpected {type(error).__name__}: {error}"
                families.scrape_success.add_metric(labels, 0)
                families.scrape_error.add_metric([*labels, message.splitlines()[0] if message else "?"], 1)
            else:
                families.scrape_success.add_metric(labels, 1)
        yield from families.all()


def server_name(dsn: str) -> str:
    """host:port of a DSN, as the server label shows it (no password)."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    return f"{host}:{port}"


class Families:
    """The metric families of one scrape, filled server by server."""

    def __init__(self, extra: list[str]) -> None:
        db = [*extra, "database"]
        self.scrape_success = GaugeMetricFamily(
            "alive_worker_scrape_success",
            "1 if the server's alive_worker status could be read, else 0",
            labels=extra,
        )
        self.scrape_error = GaugeMetricFamily(
            "alive_worker_scrape_error", "Why the server's status could not be read (the error as a label)",
            labels=[*extra, "error"],
        )  # fmt: skip
        self.build_info = GaugeMetricFamily(
            "alive_worker_build_info",
            "alive_worker's versions: the command, the extension in the database read, the server",
            labels=[*extra, "version", "extension_version", "server_version"],
        )
        self.in_recovery = GaugeMetricFamily(
            "alive_worker_in_recovery",
            "1 on a standby (the workers wait for promotion), else 0",
            labels=extra,
        )
        self.up = GaugeMetricFamily(
            "alive_worker_up",
            "1 if the worker runs and its last tick wrote a heartbeat as durable as clients' commits, else 0",
            labels=db,
        )
        self.state = GaugeMetricFamily(
            "alive_worker_state", "The worker's state (1 for the current one)", labels=[*db, "state"]
        )
        self.last_heartbeat = GaugeMetricFamily(
            "alive_worker_last_heartbeat_timestamp_seconds",
            "When the last OK heartbeat was written (on a standby: the newest replayed one), Unix time",
            labels=db,
        )
        self.interval = GaugeMetricFamily(
            "alive_worker_tick_interval_seconds", "The worker's interval between heartbeats", labels=db
        )
        self.ticks = CounterMetricFamily(
            "alive_worker_ticks",
            "Ticks since the worker process started (a new process starts at 0), by result",
            labels=[*db, "result"],
        )
        self.probes = CounterMetricFamily(
            "alive_worker_probes",
            "Client-path probes since the worker process started (a new process starts at 0), by result",
            labels=[*db, "result"],
        )
        self.tick_duration = GaugeMetricFamily(
            "alive_worker_tick_duration_seconds",
            "Tick durations over the last 128 ticks, by quantile",
            labels=[*db, "quantile"],
        )
        self.commit_wait = GaugeMetricFamily(
            "alive_worker_commit_wait_seconds",
            "How long the last tick's commit took, synchronous replication wait included",
            labels=db,
        )
        self.connect_failures = GaugeMetricFamily(
            "alive_worker_connect_failures", "Failed attempts to connect since the last success", labels=db
        )
        self.lag = GaugeMetricFamily(
            "alive_worker_replication_lag_seconds",
            "A standby's replication lag, from the heartbeats",
            labels=db,
        )
        self.disk_free = GaugeMetricFamily(
            "alive_worker_disk_free_bytes",
            "Free space of the fullest file system of the data directory, pg_wal and the tablespaces",
            labels=[*db, "where"],
        )
        self.disk_size = GaugeMetricFamily(
            "alive_worker_disk_size_bytes",
            "Size of that file system",
            labels=[*db, "where"],
        )
        self.skew = GaugeMetricFamily(
            "alive_worker_clock_skew_seconds",
            "How far a standby's clock is ahead of its primary's (negative: behind)",
            labels=db,
        )

    def all(self) -> Iterable[Metric]:
        return [
            self.scrape_success, self.scrape_error, self.build_info, self.in_recovery, self.up, self.state,
            self.last_heartbeat, self.interval, self.ticks, self.tick_duration, self.commit_wait,
            self.connect_failures, self.lag, self.skew, self.disk_free, self.disk_size, self.probes,
        ]  # fmt: skip


def read_server(conn: Connection, families: Families, labels: list[str]) -> None:
    extension = installed_extension(conn)
    server = conn.execute(
        "SELECT pg_catalog.split_part(pg_catalog.current_setting('server_version'), ' ', 1) AS server_version,"
        " pg_catalog.pg_is_in_recovery() AS in_recovery, pg_catalog.current_database() AS database"
    ).fetchone()
    assert server is not None
    if extension is None:
        read_runners(conn, families, labels, server)
        return
    families.build_info.add_metric([*labels, __version__, extension.version, server["server_version"]], 1)
    families.in_recovery.add_metric(labels, 1 if server["in_recovery"] else 0)
    rows = conn.execute(
        sql.SQL("SELECT * FROM {} ORDER BY database").format(extension.name("workers"))
    ).fetchall()
    for row in rows:
        db = [*labels, row["database"]]
        failed_last = row["last_error_at"] is not None and (
            row["last_ok_at"] is None or row["last_error_at"] > row["last_ok_at"]
        )
        up = row["pid"] is not None and row["state"] in states.AVAILABLE and not failed_last
        families.up.add_metric(db, 1 if up else 0)
        families.state.add_metric([*db, row["state"]], 1)
        if row["last_ok_at"] is not None:
            families.last_heartbeat.add_metric(db, row["last_ok_at"].timestamp())
        families.interval.add_metric(db, row["tick_interval"].total_seconds())
        # Extension 1.2 and older have no disk columns.
        if row.get("disk_free_bytes") is not None and row.get("disk_size_bytes") is not None:
            where = [*db, row["disk_free_where"] or ""]
            families.disk_free.add_metric(where, row["disk_free_bytes"])
            families.disk_size.add_metric(where, row["disk_size_bytes"])
        for result in ("ok", "failed", "skipped"):
            families.ticks.add_metric([*db, result], row[f"ticks_{result}"])
        # Only while a probe role is set (extension 1.2 and older have no probe columns).
        if row.get("probe_role") is not None:
            for result in ("ok", "failed"):
                families.probes.add_metric([*db, result], row[f"probes_{result}"])
        for quantile, column in (("0.5", "tick_ms_p50"), ("0.99", "tick_ms_p99")):
            if row[column] is not None:
                families.tick_duration.add_metric([*db, quantile], row[column] / 1000)
        if row.get("last_commit_ms") is not None:
            families.commit_wait.add_metric(db, row["last_commit_ms"] / 1000)
        if row.get("connect_failures") is not None:
            families.connect_failures.add_metric(db, row["connect_failures"])
    if server["in_recovery"]:
        read_standby(conn, extension, families, [*labels, server["database"]])


def read_runners(conn: Connection, families: Families, labels: list[str], server: dict[str, Any]) -> None:
    """A server without the extension: the alive-worker run sessions, as status reads them (_runners)."""
    rows = _runners.read(conn)
    if not rows:
        require_extension(conn)  # neither: the same error as before, and scrape_success 0
    families.build_info.add_metric([*labels, __version__, "", server["server_version"]], 1)
    families.in_recovery.add_metric(labels, 1 if server["in_recovery"] else 0)
    for row in rows:
        db = [*labels, row["database"]]
        families.up.add_metric(db, 1 if row["state"] in states.AVAILABLE else 0)
        families.state.add_metric([*db, row["state"]], 1)
        if row["last_ok_at"] is not None:
            families.last_heartbeat.add_metric(db, row["last_ok_at"].timestamp())
        families.interval.add_metric(db, row["tick_interval"].total_seconds())


def read_standby(conn: Connection, extension: Extension, families: Families, db: list[str]) -> None:
    """The lag (and the clock skew) of this standby, from its database's heartbeats."""
    try:
        reading = conn.execute(sql.SQL("SELECT * FROM {}()").format(extension.name("lag"))).fetchone()
    except psycopg.errors.UndefinedTable:
        return
    assert reading is not None
    if reading["lag"] is not None:
        families.lag.add_metric(db, reading["lag"].total_seconds())
    if reading["last_heartbeat_at"] is not None:
        families.last_heartbeat.add_metric(db, reading["last_heartbeat_at"].timestamp())
    if reading.get("clock_skew") is not None:
        families.skew.add_metric(db, reading["clock_skew"].total_seconds())


def exposition(collector: WorkersCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def write_atomically(path: Path, data: bytes) -> None:
    """A reader (node_exporter) sees the old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    collector = WorkersCollector(dsns(args))
    data = exposition(collector)
    if args.output:
        try:
            write_atomically(Path(args.output), data)
        except OSError as error:
            raise CliError(f"cannot write {args.output}: {error.strerror}") from error
    else:
        out.write(data.decode())
    if collector.failures:
        sys.stderr.write(f"alive-worker metrics: {collector.failures} server(s) could not be read\n")
        return Status.UNKNOWN
    return Status.OK


def run_exporter(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    address, _, port = args.listen.rpartition(":")
    if not address or not port.isdigit():
        raise CliError(
            f"--listen {args.listen!r} is not ADDRESS:PORT", "For example --listen 127.0.0.1:9187."
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkersCollector(dsns(args)))
    try:
        started = start_http_server(int(port), addr=address.strip("[]"), registry=registry)
    except OSError as error:
        raise CliError(f"cannot listen on {args.listen}: {error.strerror}") from error
    out.write(f"alive-worker exporter: serving http://{args.listen}/metrics\n")
    out.flush()
    # An older prometheus_client (Debian 12's python3-prometheus-client 0.16,
    # which the Debian package uses) returns neither the server nor its
    # thread: it serves from a daemon thread until the process ends.
    if started is None:
        while True:
            time.sleep(1)
    server, thread = started
    try:
        while thread.is_alive():
            time.sleep(1)
    finally:
        server.shutdown()
    return Status.OK
