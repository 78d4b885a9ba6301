"""make bench, high availability: write unavailability and promotion.

Two phases, each on throwaway servers of --bindir, run as the server user:

- promotion: a primary and a fresh streaming standby (pg_basebackup -R),
  alive_worker preloaded on both at the given interval; `SELECT pg_promote(),
  clock_timestamp()` on the standby, then the time from that clock reading to
  the first heartbeat the promoted server commits (its worker's row
  "... counting! 1", by commit timestamp), and from the log line "database
  system is ready to accept connections" that the postmaster writes when
  recovery has ended.  pg_promote() looks ten times a second whether
  recovery has ended, so it returns up to 100 ms after that.
- switchover and failover: etcd and two Patroni nodes (tests/patroni_cluster.py),
  alive_worker at 100 ms, and a client writing one row every 10 ms through a
  multi-host target_session_attrs=read-write DSN, reconnecting when cut off.
  Around each event, the longest gap between heartbeats committed (read from
  the final leader) next to the longest gap between the client's
  acknowledged writes, and between its rows kept (commit timestamps).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import MESSAGE, SERVER_USER
from patroni_cluster import PatroniCluster, free_port, wait_for

PROMOTIONS = 5  # each interval
CLIENT_PERIOD = 0.010  # one row every 10 ms
SETTLE_SECONDS = 3.0  # writing before and after each event
READY = re.compile(r"^(\S+ \S+) UTC \[\d+\] LOG:  database system is ready to accept connections", re.M)


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


def as_server_user(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
    env = ["env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"]
    return subprocess.run([*prefix, *env, *command], check=check, capture_output=True, text=True)


def give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_USER, SERVER_USER)


class Server:
    """One data directory of a plain (non-Patroni) server, on a TCP port of loopback."""

    def __init__(self, bindir: Path, data: Path, port: int) -> None:
        self.bindir, self.data, self.port = bindir, data, port
        self.log_file = data.parent / f"{data.name}.log"

    def pg_ctl(self, *args: str) -> None:
        as_server_user(str(self.bindir / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.log_file), "-w", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.pg_ctl("-m", "immediate", "-w", "stop")

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SERVER_USER, dbname="postgres", autocommit=True
        )

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


def settings_text(settings: dict[str, str]) -> str:
    return "".join(f"{name} = '{value}'\n" for name, value in settings.items())


def promote_once(bindir: Path, data: Path, primary: Server) -> tuple[float, float | None]:
    """A fresh standby of primary, promoted: ms from pg_promote() returning, and from recovery's end, to its first heartbeat."""
    standby = Server(bindir, data, free_port())
    as_server_user(str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                   "-U", SERVER_USER, "-D", str(standby.data), "-R", "-X", "stream")  # fmt: skip
    with open(standby.data / "postgresql.conf", "a") as conf:
        conf.write(settings_text({"port": str(standby.port)}))
    standby.start()
    try:
        wait_for(lambda: standby.sql("SELECT status FROM pg_stat_wal_receiver") == [("streaming",)],
                 "the standby to stream", 30)  # fmt: skip
        [(replayed,)] = standby.sql("SELECT coalesce(max(pk), 0) FROM public.log_table")
        log_mark = standby.log_file.stat().st_size
        [(promoted, promoted_at)] = standby.sql("SELECT pg_promote(), clock_timestamp()")
        if not promoted:
            raise RuntimeError("pg_promote() returned false")
        # The primary goes on writing, and the standby replaying, until the
        # promotion: the promoted server's worker is the one counting from 1
        # again.
        first = wait_for(
            lambda: standby.sql(
                "SELECT min(pg_xact_commit_timestamp(xmin)) FROM public.log_table WHERE pk > %s AND message = %s",
                [replayed, f"{MESSAGE} 1"],
            )[0][0],
            "the first heartbeat after promotion",
            30,
        )
        ready = READY.search(standby.log_file.read_bytes()[log_mark:].decode(errors="replace"))
        from_ready = None
        if ready is not None:
            ready_at = datetime.strptime(ready.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
            from_ready = (first - ready_at).total_seconds() * 1000
        return (first - promoted_at).total_seconds() * 1000, from_ready
    finally:
        standby.stop()
        shutil.rmtree(standby.data, ignore_errors=True)


def measure_promotion(bindir: Path, run_dir: Path, interval: str) -> dict[str, list[float]]:
    """PROMOTIONS promotions of fresh standbys of one primary, at this interval."""
    base = run_dir / f"promotion-{interval}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    give_to_server_user(base)
    primary = Server(bindir, base / "primary", free_port())
    as_server_user(str(bindir / "initdb"), "-D", str(primary.data), "-A", "trust", "-U", SERVER_USER)
    common = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "shared_preload_libraries": "alive_worker",
        "alive_worker.interval": interval,
        "track_commit_timestamp": "on",
        "timezone": "UTC",
        "log_timezone": "UTC",
        "log_line_prefix": "%m [%p] ",
        "max_worker_processes": "16",
    }
    with open(primary.data / "postgresql.conf", "a") as conf:
        conf.write(settings_text({**common, "port": str(primary.port)}))
    primary.start()
    after_promote: list[float] = []
    after_ready: list[float] = []
    try:
        wait_for(
            lambda: primary.sql("SELECT to_regclass('public.log_table')")[0][0], "the heartbeat table", 30
        )
        for round_number in range(PROMOTIONS):
            to_first, from_ready = promote_once(bindir, base / f"standby{round_number}", primary)
            after_promote.append(to_first)
            if from_ready is not None:
                after_ready.append(from_ready)
    finally:
        primary.stop()
    log(
        f"promotion at {interval}: first heartbeat {statistics.median(after_promote):.0f} ms after pg_promote()"
        f" returned (worst {max(after_promote):.0f} ms)"
        + (f", {statistics.median(after_ready):.0f} ms after recovery ended" if after_ready else "")
    )
    return {"after_promote_ms": after_promote, "after_ready_ms": after_ready}


class Writer(threading.Thread):
    """A client writing one row every 10 ms, reconnecting (to whichever node is read-write) when cut off."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.acks: list[float] = []
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        next_at = time.monotonic()
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                conn.execute("INSERT INTO public.client_writes DEFAULT VALUES")
                self.acks.append(time.time())
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
            next_at += CLIENT_PERIOD
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - CLIENT_PERIOD)
        if conn is not None:
            conn.close()


def longest_gap(times: Sequence[float], start: float, end: float) -> float:
    """The longest time without an event in [start, end], in milliseconds; the edges count."""
    inside = sorted(t for t in times if start <= t <= end)
    points = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(points)) * 1000


def epoch_times(leader: Any, table: str) -> list[float]:
    rows = leader.sql(
        f"SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM public.{table}"
    )
    return [float(t) for (t,) in rows if t is not None]


# What the client beside an event writes into, one row each time.
CLIENT_TABLE = (
    "CREATE TABLE public.client_writes (pk bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
)


def patroni_pair(
    base: Path, bindir: Path, patroni_bin_dir: str, interval: str, dcs_settings: dict[str, str] | None = None
) -> PatroniCluster:
    """etcd and two Patroni nodes in base (made anew, the server user's), alive_worker at interval."""
    shutil.rmtree(base, ignore_errors=True)
    cluster = PatroniCluster(
        base,
        bin_dir=str(bindir),
        patroni_bin_dir=patroni_bin_dir,
        count=2,
        settings={"alive_worker.interval": interval},
        dcs_settings=dcs_settings,
    )
    base.mkdir(parents=True)
    give_to_server_user(base)
    return cluster


def measure_switchover_and_failover(bindir: Path, run_dir: Path, patroni_bin_dir: str) -> dict[str, Any]:
    cluster = patroni_pair(
        run_dir / "patroni", bindir, patroni_bin_dir, "100ms", dcs_settings={"track_commit_timestamp": "on"}
    )
    try:
        first = cluster.start()
        second = next(node for node in cluster.nodes if node is not first)
        first.sql(CLIENT_TABLE)
        wait_for(lambda: first.sql("SELECT to_regclass('public.log_table')")[0][0], "the heartbeat table", 30)
        writer = Writer(cluster.multi_host_dsn(target_session_attrs="read-write"))
        writer.start()
        time.sleep(SETTLE_SECONDS)

        switch_start = time.time()
        result = cluster.switchover(first, second)
        if result.returncode != 0:
            raise RuntimeError(f"patronictl switchover failed: {result.stdout}{result.stderr}")
        cluster.wait_for_roles()
        wait_for(
            lambda: len(writer.acks) > 0 and writer.acks[-1] > time.time() - 0.5,
            "the client writing again",
            60,
        )
        switch_end = time.time()
        time.sleep(SETTLE_SECONDS)

        fail_start = time.time()
        second.kill()
        wait_for(lambda: first.role() == "primary", "the replica to take over", 120)
        wait_for(lambda: writer.acks[-1] > time.time() - 0.5, "the client writing again", 60)
        fail_end = time.time()
        time.sleep(SETTLE_SECONDS)
        writer.stopping.set()
        writer.join(timeout=10)

        heartbeats = epoch_times(first, "log_table")
        kept = epoch_times(first, "client_writes")
        figures: dict[str, Any] = {}
        for event, start, end in (
            ("switchover", switch_start, switch_end),
            ("failover", fail_start, fail_end),
        ):
            window = (start - 1.0, end + 1.0)
            figures[event] = {
                "heartbeat_gap_ms": longest_gap(heartbeats, *window),
                "client_ack_gap_ms": longest_gap(writer.acks, *window),
                "client_kept_gap_ms": longest_gap(kept, *window),
                "event_seconds": end - start,
            }
            f = figures[event]
            log(
                f"{event}: longest heartbeat gap {f['heartbeat_gap_ms']:.0f} ms, client's {f['client_ack_gap_ms']:.0f} ms"
                f" (acknowledged) / {f['client_kept_gap_ms']:.0f} ms (kept)"
            )
        figures["client_writes_acknowledged"] = len(writer.acks)
        figures["client_writes_kept"] = len(kept)
        figures["client_failures"] = writer.failures
        figures["ttl_s"] = cluster.ttl
        return figures
    finally:
        cluster.stop()


def measure(bindir: Path, run_dir: Path) -> dict[str, Any]:
    """Every figure of this phase, keyed for bench.json."""
    patroni_bin_dir = str(Path(sys.executable).parent)
    values: dict[str, Any] = {}
    log("== high availability: promotion to first heartbeat")
    for interval in ("100ms", "10s"):
        values[f"ha.promotion.{interval}"] = measure_promotion(bindir, run_dir, interval)
    log("== high availability: switchover and failover under Patroni, a client writing every 10 ms")
    values["ha.patroni"] = measure_switchover_and_failover(bindir, run_dir, patroni_bin_dir)
    return values


def table(values: dict[str, Any]) -> str:
    """The phase's figures as a Markdown table, with the issue's goals."""
    lines = [
        "| figure | alive_worker | client | goal | verdict |",
        "|---|---:|---:|---|---|",
    ]
    patroni = values["ha.patroni"]
    for event in ("switchover", "failover"):
        f = patroni[event]
        difference = f["heartbeat_gap_ms"] - f["client_ack_gap_ms"]
        lines.append(
            f"| longest write gap, {event} (Patroni, ttl {patroni['ttl_s']} s; heartbeat at 100 ms, client every 10 ms)"
            f" | {f['heartbeat_gap_ms']:,.0f} ms | {f['client_ack_gap_ms']:,.0f} ms acknowledged,"
            f" {f['client_kept_gap_ms']:,.0f} ms kept | heartbeat within one interval (100 ms) of the client"
            f" | {difference:+,.0f} ms: {'goal met' if abs(difference) <= 100 else 'NOT REACHED'} |"
        )
    for interval in ("100ms", "10s"):
        p = values[f"ha.promotion.{interval}"]
        worst = max(p["after_promote_ms"])
        ready = (
            f"; {statistics.median(p['after_ready_ms']):.0f} ms after recovery ended"
            if p["after_ready_ms"]
            else ""
        )
        lines.append(
            f"| pg_promote() returning to first heartbeat committed, interval {interval}"
            f" (median of {len(p['after_promote_ms'])}; worst {worst:.0f} ms{ready})"
            f" | {statistics.median(p['after_promote_ms']):.0f} ms | | ≤ 50 ms whatever the interval"
            f" | {'goal met' if worst <= 50 else 'NOT REACHED'} |"
        )
    return "\n".join(lines)
