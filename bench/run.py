"""make bench: alive_worker against its baselines, in the same run, on the same cluster settings.

Runs as root (scripts/bench sees to the build and installs first): the
clusters run as the server's OS user, and root reads their processes'
/proc files.  Everything is measured from outside the workers:

- tick times from the rows themselves: ``ts`` (the tick's transaction start,
  set by the worker just before it starts the transaction) and the commit
  timestamp (``track_commit_timestamp = on``); alive_worker ticks on
  wall-clock multiples of the interval (``alive_worker.clock_aligned``), so
  each tick's deadline is its timestamp rounded down to the interval;
- CPU from /proc/PID/schedstat (nanoseconds on CPU), memory from
  /proc/PID/smaps_rollup (PSS), exits from a pidfd.

The C reference (bench/alive_worker_ref.c) sleeps a plain interval after each
tick: its deadline is taken as its previous commit plus the interval.

Writes bench.json, lateness.png and table.md into --out; the sync-rep phase
(bench/stall.py) writes stall.json and stall.png beside them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ha
import psycopg

SERVER_USER = "postgres"
MESSAGE = "STILL ALIVE and counting!"
ALIVE = "alive worker"
REF = "alive worker ref"
TABLES = {ALIVE: "log_table", REF: "ref_log_table", "pgbench": "pgbench_log"}
TABLE_SHAPE = "(pk serial PRIMARY KEY, message text, ts timestamp without time zone DEFAULT now())"

# Phase lengths, chosen so that the whole run stays well under 10 minutes.
CPU_ROUNDS = 16  # alternating rounds at 10 ms, each synchronous_commit
CPU_SECONDS = 1.5  # each worker, each round
MEMORY_SETTLE_SECONDS = 2.0  # ticking at 10 ms before memory is read
BACK_TO_BACK_SECONDS = 8.0  # each of the three, each synchronous_commit
GROWTH_TICKS = 100_000  # back to back, synchronous_commit off
GROWTH_MAX_SECONDS = 40.0
DRIFT_TICKS = 1000  # at 100 ms: 100 s, both workers at once
LOAD_SECONDS = 30.0  # pgbench -c 8, both workers at 100 ms
STARTS = 5  # first heartbeat and stop, each worker
CLIENT_ROUNDS = 3  # alternate server starts with and without the preload
CONNECTIONS = 100  # connection time, each round
BACKENDS = 10  # backend USS samples, each round


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# ---- the cluster ----


class Cluster:
    """One data directory, restarted with the settings each phase needs."""

    def __init__(self, bindir: Path, run_dir: Path, port: int) -> None:
        self.bindir = bindir
        self.run_dir = run_dir
        self.data = run_dir / "data"
        self.log_file = run_dir / "server.log"
        self.port = port

    def as_server_user(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = ["env", "-i", f"PATH={self.bindir}:/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"]
        prefix = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *env, *command], check=check, capture_output=True, text=True)

    def initdb(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.as_server_user(
                f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False
            )
        shutil.rmtree(self.data, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)
        self.as_server_user(f"{self.bindir}/initdb", "-D", str(self.data), "-A", "trust", "-U", SERVER_USER)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"""
# make bench: the same settings in every phase; the phase's own in bench.conf
listen_addresses = ''
unix_socket_directories = '{self.run_dir}'
port = {self.port}
max_worker_processes = 16
max_connections = 50
track_commit_timestamp = on
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] '
autovacuum = off
alive_worker.clock_aligned = on
include_if_exists = 'bench.conf'
"""
            )

    def configure(self, **settings: str) -> None:
        lines = [f"{name} = '{value}'" for name, value in settings.items()]
        (self.data / "bench.conf").write_text("\n".join(lines) + "\n")
        shutil.chown(self.data / "bench.conf", SERVER_USER)

    def start(self, **settings: str) -> None:
        self.configure(**settings)
        self.as_server_user(
            f"{self.bindir}/pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-w", "start"
        )

    def stop(self) -> None:
        self.as_server_user(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def reload(self, **settings: str) -> None:
        self.configure(**settings)
        self.sql("SELECT pg_reload_conf()")
        time.sleep(0.5)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.run_dir), port=self.port, user=SERVER_USER, dbname="postgres", autocommit=True
        )

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def worker_pid(self, backend_type: str, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", [backend_type])
            if rows:
                return int(rows[0][0])
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {backend_type} process after {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.01)

    def last_pk(self, worker: str) -> int:
        return int(self.sql(f"SELECT coalesce(max(pk), 0) FROM {TABLES[worker]}")[0][0])

    def wait_for_pk(self, worker: str, pk: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.last_pk(worker) < pk:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{worker} wrote no row {pk} within {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.05)

    def ticks(self, worker: str, after_pk: int, upto_pk: int | None = None) -> list[tuple[int, int, int]]:
        """(pk, start, commit) of the rows after after_pk, in microseconds since the epoch."""
        upto = "" if upto_pk is None else f"AND pk <= {int(upto_pk)}"
        rows = self.sql(
            "SELECT pk, (extract(epoch FROM ts) * 1e6)::bigint,"
            " (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6)::bigint"
            f" FROM {TABLES[worker]} WHERE pk > %s {upto} ORDER BY pk",
            [after_pk],
        )
        return [(int(pk), int(start), int(commit)) for pk, start, commit in rows]


# ---- processes, from outside ----


def cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def pss_kb(pid: int) -> int:
    match = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")
    return int(match.group(1))


def private_mappings_kb(pid: int, counters: tuple[str, ...]) -> int:
    """The sum of these smaps counters over the process's private mappings, in kB."""
    total = 0
    private = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            private = fields[1].endswith("p")
        elif private and fields[0] in counters:
            total += int(fields[1])
    return total


def private_pss_kb(pid: int) -> int:
    """PSS of the process's private mappings: its heap, stack and libraries, not shared memory.

    A process's PSS also counts its share of every shared-buffer page it has
    touched, which grows with the table and says nothing of the process itself.
    """
    return private_mappings_kb(pid, ("Pss:",))


def uss_kb(pid: int) -> int:
    """Memory only this process uses, in its private mappings (Private_Clean + Private_Dirty).

    Shared memory is left out: its pages count as private to whichever
    process alone touched them, which depends on what else runs.
    """
    return private_mappings_kb(pid, ("Private_Clean:", "Private_Dirty:"))


def wait_for_exit(pid: int, timeout: float) -> None:
    """Returns when the process has exited (a pidfd turns readable)."""
    fd = os.pidfd_open(pid)
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise RuntimeError(f"process {pid} still running after {timeout:.0f} s")
    finally:
        os.close(fd)


# ---- what the rows say ----


def lateness_on_grid(ticks: list[tuple[int, int, int]], interval_us: int) -> list[tuple[int, int, int]]:
    """(deadline, start - deadline, commit - deadline) for ticks on the wall-clock grid."""
    return [
        (start - start % interval_us, start % interval_us, commit - (start - start % interval_us))
        for _, start, commit in ticks
    ]


def lateness_naive(ticks: list[tuple[int, int, int]], interval_us: int) -> list[tuple[int, int, int]]:
    """The same for the naive worker, whose deadline is its previous commit plus the interval."""
    result = []
    for (_, _, previous_commit), (_, start, commit) in itertools.pairwise(ticks):
        deadline = previous_commit + interval_us
        result.append((deadline, start - deadline, commit - deadline))
    return result


def drift_us(ticks: list[tuple[int, int, int]], interval_us: int) -> int:
    """(last ts - first ts) - (n - 1) * interval."""
    return ticks[-1][1] - ticks[0][1] - (len(ticks) - 1) * interval_us


# ---- phases ----


@dataclass
class Figures:
    """Everything measured, by phase; written out as bench.json."""

    values: dict[str, Any] = field(default_factory=dict)

    def put(self, key: str, value: Any) -> None:
        self.values[key] = value


def measure_memory(cluster: Cluster, worker: str, figures: Figures) -> None:
    """The worker's PSS, ticking at 10 ms with sync commit off, alone in its cluster."""
    cluster.reload(**worker_settings(worker, interval="10ms"), synchronous_commit="off")
    pid = cluster.worker_pid(worker)
    time.sleep(MEMORY_SETTLE_SECONDS)
    key = f"{worker_key(worker)}.sync_off"
    figures.put(f"{key}.pss_kb", pss_kb(pid))
    figures.put(f"{key}.private_pss_kb", private_pss_kb(pid))


def measure_ticks_at_10ms(cluster: Cluster, figures: Figures, sync: str) -> None:
    """CPU per tick and service time at a 10 ms interval, the two workers in alternating rounds.

    Both are preloaded; in each round one ticks at 10 ms while the other
    waits an hour, so that a change in the machine's speed during the run
    (a virtual machine's neighbours) reaches both alike: rounds are short,
    and each of alive_worker's is compared with the C reference's next to
    it.  CPU per tick is the median of the rounds, the ratio the median of
    those pairs' ratios; service time percentiles are over all their ticks.
    """
    cpu: dict[str, list[float]] = {ALIVE: [], REF: []}
    late: dict[str, list[tuple[int, int, int]]] = {ALIVE: [], REF: []}
    for number in range(CPU_ROUNDS):
        for worker in (ALIVE, REF) if number % 2 == 0 else (REF, ALIVE):
            other = REF if worker == ALIVE else ALIVE
            cluster.reload(
                **worker_settings(worker, interval="10ms"),
                **worker_settings(other, interval="1h"),
                synchronous_commit=sync,
            )
            pid = cluster.worker_pid(worker)
            first_pk, cpu_before = cluster.last_pk(worker), cpu_ns(pid)
            time.sleep(CPU_SECONDS)
            last_pk, cpu_after = cluster.last_pk(worker), cpu_ns(pid)
            cpu[worker].append((cpu_after - cpu_before) / 1000 / max(last_pk - first_pk, 1))
            ticks = cluster.ticks(worker, first_pk, last_pk)
            late[worker] += (
                lateness_on_grid(ticks, 10_000) if worker == ALIVE else lateness_naive(ticks, 10_000)
            )
    ratios = [alive / ref for alive, ref in zip(cpu[ALIVE], cpu[REF], strict=True)]
    figures.put(f"alive.sync_{sync}.cpu_ratio_to_ref", statistics.median(ratios))
    quartiles = statistics.quantiles(ratios, n=4)
    figures.put(f"alive.sync_{sync}.cpu_ratio_quartiles", [quartiles[0], quartiles[2]])
    for worker in (ALIVE, REF):
        key = f"{worker_key(worker)}.sync_{sync}"
        service = [commit for _, _, commit in late[worker]]
        figures.put(f"{key}.cpu_per_tick_us", statistics.median(cpu[worker]))
        figures.put(f"{key}.cpu_per_tick_rounds_us", [round(value, 1) for value in cpu[worker]])
        figures.put(f"{key}.ticks_at_10ms", len(late[worker]))
        figures.put(f"{key}.service_p50_us", percentile(service, 0.5))
        figures.put(f"{key}.service_p99_us", percentile(service, 0.99))
        figures.put(f"{key}.lateness_10ms_p99_us", percentile([start for _, start, _ in late[worker]], 0.99))
        log(
            f"{worker}, synchronous_commit {sync}: {statistics.median(cpu[worker]):.1f} us CPU per tick "
            f"(rounds {', '.join(f'{value:.0f}' for value in cpu[worker])}), "
            f"ratio to C, median of pairs {statistics.median(ratios):.2f}, "
            f"service p50 {percentile(service, 0.5):.0f} us, p99 {percentile(service, 0.99):.0f} us"
        )


def measure_back_to_back(cluster: Cluster, worker: str, figures: Figures, sync: str) -> None:
    cluster.reload(**worker_settings(worker, back_to_back="on"), synchronous_commit=sync)
    pid = cluster.worker_pid(worker)
    time.sleep(1.0)
    key = f"{worker_key(worker)}.sync_{sync}"
    start_pk, started = cluster.last_pk(worker), time.monotonic()
    if sync == "off":
        # Memory growth over GROWTH_TICKS ticks, from a warmed-up start.
        pss_before = private_pss_kb(pid)
        deadline = started + GROWTH_MAX_SECONDS
        while cluster.last_pk(worker) < start_pk + GROWTH_TICKS and time.monotonic() < deadline:
            time.sleep(0.2)
        end_pk, elapsed = cluster.last_pk(worker), time.monotonic() - started
        figures.put(f"{key}.growth_ticks", end_pk - start_pk)
        figures.put(f"{key}.pss_growth_kb", private_pss_kb(pid) - pss_before)
    else:
        time.sleep(BACK_TO_BACK_SECONDS)
        end_pk, elapsed = cluster.last_pk(worker), time.monotonic() - started
    figures.put(f"{key}.back_to_back_per_s", (end_pk - start_pk) / elapsed)
    cluster.reload(**worker_settings(worker, interval="10s"), synchronous_commit=sync)
    log(f"{worker} back to back, synchronous_commit {sync}: {(end_pk - start_pk) / elapsed:.0f} ticks/s")


def worker_key(worker: str) -> str:
    return {ALIVE: "alive", REF: "ref"}[worker]


def worker_settings(worker: str, interval: str = "10s", back_to_back: str = "off") -> dict[str, str]:
    prefix = {ALIVE: "alive_worker", REF: "alive_worker_ref"}[worker]
    return {f"{prefix}.interval": interval, f"{prefix}.back_to_back": back_to_back}


def run_pgbench(cluster: Cluster, args: Sequence[str], seconds: float) -> subprocess.Popen[str]:
    command = [
        str(cluster.bindir / "pgbench"), "-h", str(cluster.run_dir), "-p", str(cluster.port),
        "-U", SERVER_USER, "-n", "-T", str(int(seconds)), *args, "postgres",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def pgbench_tps(process: subprocess.Popen[str]) -> float:
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{output}")
    match = re.search(r"^tps = ([\d.]+)", output, re.M)
    if match is None:
        raise RuntimeError(f"no tps in pgbench's output:\n{output}")
    return float(match.group(1))


def measure_pgbench(cluster: Cluster, figures: Figures, script: Path) -> None:
    for sync in ("off", "on"):
        cluster.reload(synchronous_commit=sync)
        tps = pgbench_tps(
            run_pgbench(cluster, ["-c", "1", "-M", "prepared", "-f", str(script), "-D", f"message={MESSAGE} 1"],
                        BACK_TO_BACK_SECONDS)
        )  # fmt: skip
        figures.put(f"pgbench.sync_{sync}.tps", tps)
        log(f"pgbench -c 1 -M prepared, synchronous_commit {sync}: {tps:.0f} tps")


def measure_client_cost(cluster: Cluster, figures: Figures) -> None:
    """Connection time and a fresh backend's USS, with alive_worker preloaded and without.

    Alternate rounds, each on a freshly started server, so that the machine's
    own drift shows as the spread between rounds of the same kind.
    """
    results: dict[str, dict[str, list[float]]] = {
        preload: {"connect": [], "uss": [], "round_medians": []} for preload in ("none", "preloaded")
    }
    for _ in range(CLIENT_ROUNDS):
        for preload, libraries in (("none", ""), ("preloaded", "alive_worker")):
            with running(cluster, shared_preload_libraries=libraries):
                times = []
                for _ in range(CONNECTIONS):
                    started = time.perf_counter()
                    with cluster.connect() as conn:
                        conn.execute("SELECT 1")
                    times.append((time.perf_counter() - started) * 1e6)
                for _ in range(BACKENDS):
                    with cluster.connect() as conn:
                        row = conn.execute("SELECT pg_backend_pid()").fetchone()
                        assert row is not None
                        results[preload]["uss"].append(uss_kb(int(row[0])))
            results[preload]["connect"] += times
            results[preload]["round_medians"].append(percentile(times, 0.5))
    for preload, result in results.items():
        figures.put(f"client.{preload}.connect_p50_us", percentile(result["connect"], 0.5))
        figures.put(f"client.{preload}.connect_round_medians_us", result["round_medians"])
        figures.put(f"client.{preload}.backend_uss_kb", percentile(result["uss"], 0.5))
        figures.put(f"client.{preload}.backend_uss_spread_kb", max(result["uss"]) - min(result["uss"]))
        log(
            f"clients, {preload}: connect + SELECT 1 p50 {percentile(result['connect'], 0.5):.0f} us, "
            f"backend USS {percentile(result['uss'], 0.5):.0f} kB"
        )


def first_commit_after(cluster: Cluster, worker: str, ready: datetime, timeout: float = 10.0) -> float:
    """Milliseconds from ready to the first heartbeat committed after it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster.sql(
            "SELECT extract(epoch FROM min(pg_xact_commit_timestamp(xmin)) - %s) * 1000"
            f" FROM {TABLES[worker]} WHERE pg_xact_commit_timestamp(xmin) >= %s",
            [ready, ready],
        )
        if rows[0][0] is not None:
            return float(rows[0][0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"{worker} wrote no heartbeat within {timeout:.0f} s; see {cluster.log_file}")
        time.sleep(0.05)


def measure_start_and_stop(cluster: Cluster, worker: str, figures: Figures, preload: str) -> None:
    """First heartbeat after the server accepts connections, and SIGTERM mid-sleep to exit."""
    first, stop = [], []
    for _ in range(STARTS):
        log_mark = cluster.log_file.stat().st_size
        cluster.start(shared_preload_libraries=preload, **worker_settings(worker, interval="10s"))
        new_log = cluster.log_file.read_bytes()[log_mark:].decode(errors="replace")
        match = re.search(
            r"^(\S+ \S+) UTC \[\d+\] LOG:  database system is ready to accept connections", new_log, re.M
        )
        if match is None:
            raise RuntimeError(f"no 'ready to accept connections' in {cluster.log_file}")
        ready = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        first.append(first_commit_after(cluster, worker, ready))
        # Mid-sleep: the next tick is 10 s away.
        pid = cluster.worker_pid(worker)
        time.sleep(1.0)
        started = time.perf_counter()
        os.kill(pid, signal.SIGTERM)
        wait_for_exit(pid, timeout=10)
        stop.append((time.perf_counter() - started) * 1000)
        cluster.stop()
    key = worker_key(worker)
    figures.put(f"{key}.first_heartbeat_ms", first)
    figures.put(f"{key}.stop_ms", stop)
    log(
        f"{worker}: first heartbeat {statistics.median(first):.0f} ms, stop {statistics.median(stop):.1f} ms (medians)"
    )


# What a hook does from its first tick on, once it has touched its marker file.
BLOCKING_HOOKS = {"busy_loop": "while True:\n        pass", "sleep": "time.sleep(60)"}


def measure_stop_with_hook(cluster: Cluster, figures: Figures) -> None:
    """SIGTERM to exit while alive_worker.hook is in a busy loop, then in time.sleep."""
    for kind, body in BLOCKING_HOOKS.items():
        marker = cluster.run_dir / f"hook-{kind}.running"
        hook = cluster.run_dir / f"hook_{kind}.py"
        hook.write_text(
            f"import time\nfrom pathlib import Path\n\ndef hook(tick):\n"
            f"    Path({str(marker)!r}).touch()\n    {body}\n"
        )
        hook.chmod(0o644)
        stop = []
        for _ in range(STARTS):
            marker.unlink(missing_ok=True)
            cluster.start(
                shared_preload_libraries="alive_worker",
                **worker_settings(ALIVE, interval="10s"),
                **{"alive_worker.hook": f"{hook}:hook", "alive_worker.tick_timeout": "1h"},
            )
            pid = cluster.worker_pid(ALIVE)
            deadline = time.monotonic() + 10
            while not marker.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {kind} hook did not start; see {cluster.log_file}")
                time.sleep(0.01)
            time.sleep(0.5)  # well into the loop or the sleep
            started = time.perf_counter()
            os.kill(pid, signal.SIGTERM)
            wait_for_exit(pid, timeout=10)
            stop.append((time.perf_counter() - started) * 1000)
            cluster.stop()
        figures.put(f"alive.stop_hook_{kind}_ms", stop)
        log(
            f"{ALIVE}: stop with a hook in {kind}: {statistics.median(stop):.1f} ms (median), worst {max(stop):.1f} ms"
        )


def measure_schedule(cluster: Cluster, figures: Figures, script: Path) -> None:
    """Both workers at 100 ms: drift and lateness idle, then under pgbench -c 8."""
    interval_us = 100_000
    marks = {worker: cluster.last_pk(worker) for worker in (ALIVE, REF)}
    for worker in (ALIVE, REF):
        cluster.wait_for_pk(worker, marks[worker] + 1, timeout=5)
    marks = {worker: cluster.last_pk(worker) for worker in (ALIVE, REF)}
    log(f"both workers at 100 ms for {DRIFT_TICKS} ticks ({DRIFT_TICKS * interval_us / 1e6:.0f} s)")
    for worker in (ALIVE, REF):
        cluster.wait_for_pk(worker, marks[worker] + DRIFT_TICKS, timeout=DRIFT_TICKS * 0.2 + 30)
    series: dict[str, Any] = {}
    for worker in (ALIVE, REF):
        ticks = cluster.ticks(worker, marks[worker], marks[worker] + DRIFT_TICKS)
        late = lateness_on_grid(ticks, interval_us) if worker == ALIVE else lateness_naive(ticks, interval_us)
        key = worker_key(worker)
        figures.put(f"{key}.drift_us", drift_us(ticks, interval_us))
        figures.put(f"{key}.idle.lateness_p50_us", percentile([s for _, s, _ in late], 0.5))
        figures.put(f"{key}.idle.lateness_p99_us", percentile([s for _, s, _ in late], 0.99))
        series[f"{key}.idle"] = late
    log(f"drift over {DRIFT_TICKS} ticks: alive_worker {figures.values['alive.drift_us'] / 1000:.2f} ms, "
        f"C reference {figures.values['ref.drift_us'] / 1000:.1f} ms")  # fmt: skip

    # The load: pgbench's own TPC-B-like transactions, 8 clients.
    subprocess.run(
        [str(cluster.bindir / "pgbench"), "-h", str(cluster.run_dir), "-p", str(cluster.port), "-U", SERVER_USER,
         "-i", "-q", "-s", "4", "postgres"],
        check=True, capture_output=True,
    )  # fmt: skip
    marks = {worker: cluster.last_pk(worker) for worker in (ALIVE, REF)}
    log(f"both workers at 100 ms under pgbench -c 8 -j 2 for {LOAD_SECONDS:.0f} s")
    load_tps = pgbench_tps(run_pgbench(cluster, ["-c", "8", "-j", "2"], LOAD_SECONDS))
    figures.put("load.pgbench_tps", load_tps)
    for worker in (ALIVE, REF):
        ticks = cluster.ticks(worker, marks[worker])
        late = lateness_on_grid(ticks, interval_us) if worker == ALIVE else lateness_naive(ticks, interval_us)
        # The ticks written while pgbench ran, less the few after it stopped.
        late = late[: int(LOAD_SECONDS * 1e6 / interval_us)]
        key = worker_key(worker)
        figures.put(f"{key}.load.lateness_p50_us", percentile([s for _, s, _ in late], 0.5))
        figures.put(f"{key}.load.lateness_p99_us", percentile([s for _, s, _ in late], 0.99))
        series[f"{key}.load"] = late
    figures.put("series", {name: [(d, s) for d, s, _ in late] for name, late in series.items()})


# ---- the report ----


@dataclass
class Row:
    figure: str
    value: float | None
    baseline: float | None
    baseline_name: str
    unit: str
    goal: str
    acceptable: str
    verdict: str = ""
    paired_ratio: float | None = None  # when the ratio is not value / baseline

    def ratio(self) -> str:
        if self.paired_ratio is not None:
            return f"{self.paired_ratio:.2f}x"
        if self.value is None or not self.baseline:
            return ""
        return f"{self.value / self.baseline:.2f}x"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100 or unit in ("ticks/s", "kB"):
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}" if abs(value) < 10 else f"{value:.1f} {unit}"


def verdict(ok_goal: bool, ok_acceptable: bool) -> str:
    return "goal met" if ok_goal else "acceptable" if ok_acceptable else "NOT REACHED"


def build_rows(v: dict[str, Any]) -> list[Row]:
    rows = []

    def ratio(name: str, base: str) -> float:
        return float(v[name]) / float(v[base])

    for sync in ("off", "on"):
        r = v[f"alive.sync_{sync}.cpu_ratio_to_ref"]
        low, high = v[f"alive.sync_{sync}.cpu_ratio_quartiles"]
        rows.append(Row(f"CPU per tick, 10 ms, sync commit {sync} (medians of {CPU_ROUNDS} rounds; ratio: median of pairs)",
                        v[f"alive.sync_{sync}.cpu_per_tick_us"], v[f"ref.sync_{sync}.cpu_per_tick_us"], "C ref", "µs",
                        "≤ 1.1x C", "≤ 1.3x C", f"{verdict(r <= 1.1, r <= 1.3)} (pairs' quartiles {low:.2f} to {high:.2f})",
                        paired_ratio=r))  # fmt: skip
    r50 = ratio("alive.sync_off.service_p50_us", "ref.sync_off.service_p50_us")
    rows.append(Row("tick service time p50, sync commit off", v["alive.sync_off.service_p50_us"],
                    v["ref.sync_off.service_p50_us"], "C ref", "µs", "≤ 1.1x C", "≤ 1.3x C",
                    verdict(r50 <= 1.1, r50 <= 1.3)))  # fmt: skip
    p99 = v["alive.sync_off.service_p99_us"]
    r99 = ratio("alive.sync_off.service_p99_us", "ref.sync_off.service_p99_us")
    rows.append(Row("tick service time p99, sync commit off", p99, v["ref.sync_off.service_p99_us"], "C ref", "µs",
                    "≤ 1.1x C and ≤ 150 µs", "≤ 1.3x C", verdict(r99 <= 1.1 and p99 <= 150, r99 <= 1.3)))  # fmt: skip
    rows.append(Row("tick service time p50 / p99, sync commit on (info)", v["alive.sync_on.service_p50_us"],
                    v["ref.sync_on.service_p50_us"], "C ref", "µs", "", "",
                    f"p99 {v['alive.sync_on.service_p99_us']:,.0f} vs {v['ref.sync_on.service_p99_us']:,.0f} µs"))  # fmt: skip
    for sync in ("off", "on"):
        rate = ratio(f"alive.sync_{sync}.back_to_back_per_s", f"pgbench.sync_{sync}.tps")
        rows.append(Row(f"back-to-back ticks/s, sync commit {sync}", v[f"alive.sync_{sync}.back_to_back_per_s"],
                        v[f"pgbench.sync_{sync}.tps"], "pgbench -c 1", "ticks/s", "≥ 2x pgbench", "≥ 1.5x pgbench",
                        verdict(rate >= 2, rate >= 1.5)))  # fmt: skip
        rows.append(Row(f"back-to-back ticks/s, sync commit {sync} (info)", v[f"alive.sync_{sync}.back_to_back_per_s"],
                        v[f"ref.sync_{sync}.back_to_back_per_s"], "C ref", "ticks/s", "", ""))  # fmt: skip
    drift = abs(v["alive.drift_us"]) / 1000
    rows.append(Row(f"cumulative drift, {DRIFT_TICKS} ticks at 100 ms", v["alive.drift_us"] / 1000,
                    v["ref.drift_us"] / 1000, "C ref", "ms", "≤ 1 ms", "≤ 5 ms", verdict(drift <= 1, drift <= 5)))  # fmt: skip
    idle = v["alive.idle.lateness_p99_us"] / 1000
    rows.append(Row("lateness p99, idle, 100 ms", idle, v["ref.idle.lateness_p99_us"] / 1000, "C ref", "ms",
                    "≤ 2 ms", "≤ 5 ms", verdict(idle <= 2, idle <= 5)))  # fmt: skip
    load = v["alive.load.lateness_p99_us"] / 1000
    rows.append(Row("lateness p99, under pgbench -c 8, 100 ms", load, v["ref.load.lateness_p99_us"] / 1000,
                    "C ref", "ms", "≤ 20 ms", "≤ 20 ms", verdict(load <= 20, load <= 20)))  # fmt: skip
    extra = (v["alive.sync_off.private_pss_kb"] - v["ref.sync_off.private_pss_kb"]) / 1024
    rows.append(Row("memory: worker PSS, private mappings", v["alive.sync_off.private_pss_kb"],
                    v["ref.sync_off.private_pss_kb"], "C ref", "kB", "≤ C + 10 MB", "≤ C + 14 MB",
                    f"+{extra:.1f} MB: " + verdict(extra <= 10, extra <= 14)))  # fmt: skip
    rows.append(Row("memory: worker PSS, all (info)", v["alive.sync_off.pss_kb"], v["ref.sync_off.pss_kb"], "C ref",
                    "kB", "", "", f"+{(v['alive.sync_off.pss_kb'] - v['ref.sync_off.pss_kb']) / 1024:.1f} MB"))  # fmt: skip
    growth = v["alive.sync_off.pss_growth_kb"] / 1024
    rows.append(Row(f"memory growth over {v['alive.sync_off.growth_ticks']:,} ticks", v["alive.sync_off.pss_growth_kb"],
                    v["ref.sync_off.pss_growth_kb"], "C ref", "kB", "≤ 1 MB", "≤ 2 MB",
                    verdict(growth <= 1 and v["alive.sync_off.growth_ticks"] >= GROWTH_TICKS, growth <= 2)))  # fmt: skip
    first = max(v["alive.first_heartbeat_ms"])
    rows.append(Row(f"first heartbeat (median of {STARTS}; worst {first:.0f} ms)",
                    statistics.median(v["alive.first_heartbeat_ms"]), statistics.median(v["ref.first_heartbeat_ms"]),
                    "C ref", "ms", "≤ 200 ms", "≤ 500 ms", verdict(first <= 200, first <= 500)))  # fmt: skip
    stop = max(v["alive.stop_ms"])
    rows.append(Row(f"stop: SIGTERM mid-sleep to exit (median of {STARTS}; worst {stop:.1f} ms)",
                    statistics.median(v["alive.stop_ms"]), statistics.median(v["ref.stop_ms"]), "C ref", "ms",
                    "≤ 50 ms", "≤ 200 ms", verdict(stop <= 50, stop <= 200)))  # fmt: skip
    for kind, what in (("busy_loop", "a busy loop"), ("sleep", "time.sleep")):
        key = f"alive.stop_hook_{kind}_ms"
        if key not in v:  # runs from before hooks were interruptible
            continue
        worst = max(v[key])
        rows.append(Row(f"stop: SIGTERM to exit, hook in {what} (median of {len(v[key])}; worst {worst:.1f} ms)",
                        statistics.median(v[key]), statistics.median(v["alive.stop_ms"]), "sleeping worker",
                        "ms", "≤ 100 ms", "≤ 1 s", verdict(worst <= 100, worst <= 1000)))  # fmt: skip
    # Measurable: a difference larger than the spread between rounds of the same kind.
    connect_change = v["client.preloaded.connect_p50_us"] - v["client.none.connect_p50_us"]
    connect_noise = max(
        max(v[f"client.{kind}.connect_round_medians_us"]) - min(v[f"client.{kind}.connect_round_medians_us"])
        for kind in ("none", "preloaded")
    )
    rows.append(Row("client connect + SELECT 1 p50, preloaded vs not", v["client.preloaded.connect_p50_us"],
                    v["client.none.connect_p50_us"], "no preload", "µs", "no measurable change", "same",
                    f"{connect_change:+.0f} µs, round-to-round spread {connect_noise:.0f} µs: "
                    + ("no measurable change" if connect_change <= connect_noise else "SLOWER")))  # fmt: skip
    uss_change = v["client.preloaded.backend_uss_kb"] - v["client.none.backend_uss_kb"]
    uss_noise = max(v[f"client.{kind}.backend_uss_spread_kb"] for kind in ("none", "preloaded"))
    rows.append(Row("client backend USS, preloaded vs not", v["client.preloaded.backend_uss_kb"],
                    v["client.none.backend_uss_kb"], "no preload", "kB", "no measurable change", "same",
                    f"{uss_change:+.0f} kB, spread {uss_noise:.0f} kB: "
                    + ("no measurable increase" if uss_change <= max(uss_noise, 4) else "MORE")))  # fmt: skip
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| figure | alive_worker | baseline | ratio | goal / acceptable | verdict |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        goal = f"{row.goal} / {row.acceptable}" if row.goal else ""
        lines.append(
            f"| {row.figure} | {fmt(row.value, row.unit)} | {fmt(row.baseline, row.unit)} ({row.baseline_name}) "
            f"| {row.ratio()} | {goal} | {row.verdict} |"
        )
    return "\n".join(lines)


def plot(values: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy

    series = values["series"]
    figure, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    names = {"alive": "alive_worker", "ref": "C reference"}
    deadlines = {"alive": "deadline on the grid", "ref": "previous commit + interval"}
    for column, key in enumerate(("alive", "ref")):
        axis = axes[0][column]
        for phase, color, label in (("idle", "tab:blue", "idle"), ("load", "tab:red", "under pgbench -c 8")):
            points = series[f"{key}.{phase}"]
            origin = points[0][0]
            axis.plot([(d - origin) / 1e6 for d, _ in points], [max(s, 1) / 1000 for _, s in points], ".", ms=2,
                      color=color, label=f"{label} ({len(points)} ticks)")  # fmt: skip
        axis.set_title(f"{names[key]}: lateness of each tick, 100 ms interval", fontsize=10)
        axis.set_xlabel("seconds since the phase started")
        axis.set_ylabel(f"tick start - {deadlines[key]} (ms)", fontsize=9)
        axis.set_yscale("log")
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=8)
    for column, phase in enumerate(("idle", "load")):
        axis = axes[1][column]
        late = {key: [s / 1000 for _, s in series[f"{key}.{phase}"]] for key in ("alive", "ref")}
        bins = numpy.linspace(0, max(max(late["alive"]), percentile(late["ref"], 0.995)), 80)
        for key, color in (("alive", "tab:green"), ("ref", "tab:gray")):
            axis.hist(late[key], bins=bins, alpha=0.6, color=color, log=True,
                      label=f"{names[key]} (p99 {percentile(late[key], 0.99):.2f} ms)")  # fmt: skip
        axis.set_title(
            f"lateness histogram, {'idle' if phase == 'idle' else 'under pgbench -c 8'}", fontsize=10
        )
        axis.set_xlabel("lateness (ms)")
        axis.set_ylabel("ticks")
        axis.legend(fontsize=8)
    figure.suptitle(f"make bench, {values['machine']['server']}, {values['machine']['date']}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def machine(bindir: Path) -> dict[str, str]:
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    server = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "cores": str(os.cpu_count()),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "kernel": platform.release(),
        "server": server,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# ---- the run ----


@contextmanager
def running(cluster: Cluster, **settings: str) -> Iterator[Cluster]:
    cluster.start(**settings)
    try:
        yield cluster
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindir", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=55433)
    parser.add_argument(
        "--report-only", action="store_true", help="table and picture again from --out/bench.json"
    )
    parser.add_argument(
        "--ticks-only", action="store_true", help="only CPU per tick and service time at 10 ms, printed"
    )
    parser.add_argument(
        "--stop-only",
        action="store_true",
        help="only the stop figures, with and without a blocking hook, printed",
    )
    parser.add_argument(
        "--ha-only",
        action="store_true",
        help="only promotion, switchover and failover (bench/ha.py), printed",
    )
    args = parser.parse_args()
    if args.report_only:
        report(json.loads((args.out / "bench.json").read_text()), args.out)
        return
    began = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.ha_only:
        ha_values = ha.measure(args.bindir, args.run_dir)
        (args.out / "ha.json").write_text(json.dumps(ha_values, indent=1) + "\n")
        print()
        print(ha.table(ha_values))
        return
    cluster = Cluster(args.bindir, args.run_dir, args.port)
    figures = Figures()
    script = args.run_dir / "insert.sql"
    script.write_text(f"INSERT INTO public.{TABLES['pgbench']} (message) VALUES (:message);\n")

    cluster.initdb()
    with running(cluster):
        for table_name in TABLES.values():
            cluster.sql(f"CREATE TABLE {table_name} {TABLE_SHAPE}")

    if args.stop_only:
        measure_start_and_stop(cluster, ALIVE, figures, "alive_worker")
        measure_stop_with_hook(cluster, figures)
        return

    both = "alive_worker,alive_worker_ref"
    log("== both workers preloaded, ticking at 10 ms in turn")
    with running(cluster, shared_preload_libraries=both):
        for sync in ("off", "on"):
            measure_ticks_at_10ms(cluster, figures, sync)
    if args.ticks_only:
        return

    for worker, preload in ((ALIVE, "alive_worker"), (REF, "alive_worker_ref")):
        log(f"== {worker}, alone")
        with running(cluster, shared_preload_libraries=preload, **worker_settings(worker, interval="10ms")):
            for sync in ("off", "on"):
                measure_back_to_back(cluster, worker, figures, sync)
            # After 100,000 ticks and more: the steady state.
            measure_memory(cluster, worker, figures)
        measure_start_and_stop(cluster, worker, figures, preload)
    log(f"== {ALIVE}, a hook that blocks")
    measure_stop_with_hook(cluster, figures)

    log("== no preload: pgbench")
    with running(cluster, shared_preload_libraries=""):
        measure_pgbench(cluster, figures, script)
    log("== clients, with and without the preload")
    measure_client_cost(cluster, figures)

    log("== both workers at once, 100 ms")
    with running(cluster, shared_preload_libraries=both, synchronous_commit="on",
                 **worker_settings(ALIVE, interval="100ms"), **worker_settings(REF, interval="100ms")):  # fmt: skip
        measure_schedule(cluster, figures, script)

    for key, value in ha.measure(args.bindir, args.run_dir).items():
        figures.put(key, value)

    values = figures.values
    log("== sync rep: the heartbeat's commit, and a synchronous standby's stall (bench/stall.py)")
    from stall import run as run_stall

    stall = run_stall(args.bindir, args.run_dir / "stall", args.out, args.port + 10)
    values["sync_rep"] = {
        k: v for k, v in stall.items() if k not in ("samples", "commit_ms_async", "commit_ms_sync")
    }
    values["machine"] = machine(args.bindir)
    values["seconds"] = round(time.monotonic() - began)
    (args.out / "bench.json").write_text(json.dumps(values, indent=1) + "\n")
    report(values, args.out)


def report(values: dict[str, Any], out: Path) -> None:
    text = table(build_rows(values))
    if "ha.patroni" in values:
        text += "\n\n" + ha.table(values)
    (out / "table.md").write_text(text + "\n")
    plot(values, out / "lateness.png")
    print()
    print(text)
    print()
    log(f"{values['seconds']} s; figures in {out}/bench.json, picture {out}/lateness.png")


if __name__ == "__main__":
    main()
