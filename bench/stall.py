"""make bench, sync-rep phase: what the status says through a synchronous standby's stall.

A primary with alive_worker (200 ms interval) and a streaming standby named
in synchronous_standby_names.  Measured:

- the heartbeat's commit time (alive_worker.workers.last_commit_ms) with no
  synchronous standby and with a healthy one;
- through a stall (the standby's WAL receiver stopped with SIGSTOP for a
  few seconds, then SIGCONT): the primary's heartbeat age, the standby's
  lag() and clock skew, the commit wait, and what `alive-worker status`
  says (its own code: read, judge, summary), sampled every 50 ms;
- how long the stall takes to turn the status CRITICAL, and to come back.

Writes stall.json and stall.png into --out.  Run by bench/run.py, or alone:
python bench/stall.py --bindir ... --run-dir ... --out ...
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from cluster import Cluster
from common import SERVER_USER, bench_arguments, log
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alive_worker.cli import status as status_command
from alive_worker.cli._common import Status

INTERVAL = "200ms"
SAMPLE_SECONDS = 0.05
BEFORE_SECONDS = 3.0
STALL_SECONDS = 6.0
AFTER_SECONDS = 5.0
COMMIT_SECONDS = 5.0


def dict_connect(cluster: Cluster) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(
        host=str(cluster.run_dir), port=cluster.port, user=SERVER_USER, dbname="postgres",
        autocommit=True, row_factory=dict_row,
    )  # fmt: skip


def commit_ms(conn: psycopg.Connection[dict[str, Any]], seconds: float) -> list[float]:
    """last_commit_ms after each tick for seconds: one value per tick."""
    values: list[float] = []
    last_tick = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = conn.execute("SELECT last_tick_at, last_commit_ms FROM alive_worker.workers").fetchone()
        assert row is not None
        if row["last_tick_at"] != last_tick and row["last_commit_ms"] is not None:
            values.append(float(row["last_commit_ms"]))
            last_tick = row["last_tick_at"]
        time.sleep(0.02)
    return values


def sample(
    primary: psycopg.Connection[dict[str, Any]], standby: psycopg.Connection[dict[str, Any]]
) -> dict[str, Any]:
    server, rows = status_command.read(primary)
    status_command.judge(
        rows, server["now"], status_command.DEFAULT_WARN_INTERVALS, status_command.DEFAULT_CRIT_INTERVALS
    )
    status, _ = status_command.summary(rows)
    [row] = rows
    reading = standby.execute("SELECT lag, clock_skew FROM alive_worker.lag()").fetchone()
    assert reading is not None
    return {
        "age": (server["now"] - row["last_ok_at"]).total_seconds() if row["last_ok_at"] else None,
        "state": row["state"],
        "status": int(status),
        "commit_ms": row["last_commit_ms"],
        "lag": reading["lag"].total_seconds() if reading["lag"] is not None else None,
        "skew": reading["clock_skew"].total_seconds() if reading["clock_skew"] is not None else None,
    }


def run(bindir: Path, run_dir: Path, out: Path, port: int) -> dict[str, Any]:
    primary = Cluster(bindir, run_dir / "primary", port)
    standby = Cluster(bindir, run_dir / "standby", port + 1)
    for cluster in (primary, standby):
        cluster.run_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(cluster.run_dir, SERVER_USER)
    primary.initdb()
    settings = {"shared_preload_libraries": "alive_worker", "alive_worker.interval": INTERVAL}
    primary.start(**settings)
    values: dict[str, Any] = {}
    try:
        primary.sql("CREATE EXTENSION IF NOT EXISTS alive_worker")
        shutil.rmtree(standby.data, ignore_errors=True)
        standby.as_server_user(
            f"{bindir}/pg_basebackup", "-D", str(standby.data), "-R", "-c", "fast",
            "-h", str(primary.run_dir), "-p", str(primary.port), "-U", SERVER_USER,
        )  # fmt: skip
        standby_settings = {**settings, "unix_socket_directories": str(standby.run_dir),
                            "port": str(standby.port), "cluster_name": "standby"}  # fmt: skip
        standby.start(**standby_settings)
        try:
            with dict_connect(primary) as p, dict_connect(standby) as s:
                time.sleep(1)
                log("== sync rep: commit time without, then with a synchronous standby")
                values["commit_ms_async"] = commit_ms(p, COMMIT_SECONDS)
                primary.reload(**settings, synchronous_standby_names="standby")
                values["commit_ms_sync"] = commit_ms(p, COMMIT_SECONDS)

                log(f"== sync rep: the standby's WAL receiver stopped for {STALL_SECONDS:.0f} s")
                receiver = standby.worker_pid("walreceiver")
                samples: list[dict[str, Any]] = []
                began = time.monotonic()
                stalled_at = resumed_at = None
                while (now := time.monotonic() - began) < BEFORE_SECONDS + STALL_SECONDS + AFTER_SECONDS:
                    if stalled_at is None and now >= BEFORE_SECONDS:
                        os.kill(receiver, signal.SIGSTOP)
                        stalled_at = now
                    if resumed_at is None and now >= BEFORE_SECONDS + STALL_SECONDS:
                        os.kill(receiver, signal.SIGCONT)
                        resumed_at = now
                    samples.append({"t": now, **sample(p, s)})
                    time.sleep(max(0.0, SAMPLE_SECONDS - (time.monotonic() - began - now)))
        finally:
            standby.stop()
    finally:
        primary.stop()
    assert stalled_at is not None and resumed_at is not None
    critical = next(x["t"] for x in samples if x["t"] >= stalled_at and x["status"] == Status.CRITICAL)
    ok_again = next(x["t"] for x in samples if x["t"] >= resumed_at and x["status"] == Status.OK)
    values.update(
        interval_s=0.2,
        stalled_at=stalled_at,
        resumed_at=resumed_at,
        seconds_to_critical=critical - stalled_at,
        seconds_to_ok=ok_again - resumed_at,
        samples=samples,
    )
    values["commit_ms_async_median"] = statistics.median(values["commit_ms_async"])
    values["commit_ms_sync_median"] = statistics.median(values["commit_ms_sync"])
    values["commit_ms_stalled_max"] = max(x["commit_ms"] or 0 for x in samples)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stall.json").write_text(json.dumps(values, indent=1) + "\n")
    plot(values, out / "stall.png")
    log(
        f"sync rep: commit {values['commit_ms_async_median']:.2f} ms without, {values['commit_ms_sync_median']:.2f} ms "
        f"with a synchronous standby; a stall is CRITICAL after {values['seconds_to_critical']:.2f} s, "
        f"OK {values['seconds_to_ok']:.2f} s after it ends"
    )
    return values


def plot(values: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = values["samples"]
    t = [x["t"] for x in samples]
    figure, (ages, commits, statuses) = plt.subplots(3, 1, figsize=(10, 8), sharex=True,
                                                     gridspec_kw={"height_ratios": [3, 2, 1]})  # fmt: skip
    for axis in (ages, commits, statuses):
        axis.axvspan(values["stalled_at"], values["resumed_at"], color="tab:red", alpha=0.08)
        axis.grid(True, alpha=0.3)
    ages.plot(t, [x["age"] for x in samples], label="primary: age of the last OK heartbeat")
    ages.plot(t, [x["lag"] for x in samples], label="standby: lag() (by the primary's clock)")
    ages.axhline(10 * values["interval_s"], color="tab:red", ls="--", lw=0.8, label="--crit: 10 intervals")
    ages.set_ylabel("seconds")
    ages.legend(fontsize=8)
    ages.set_title(
        f"synchronous standby stalled (shaded): CRITICAL after {values['seconds_to_critical']:.2f} s, "
        f"OK {values['seconds_to_ok']:.2f} s after it ends",
        fontsize=10,
    )
    commits.plot(t, [max(x["commit_ms"] or 0.01, 0.01) for x in samples], color="tab:purple",
                 label="last_commit_ms (the heartbeat's commit, sync-rep wait included)")  # fmt: skip
    commits.set_yscale("log")
    commits.set_ylabel("ms")
    commits.legend(fontsize=8)
    colours = {0: "tab:green", 1: "tab:orange", 2: "tab:red", 3: "tab:gray"}
    statuses.scatter(t, [x["status"] for x in samples], c=[colours[x["status"]] for x in samples], s=6)
    statuses.set_yticks([0, 1, 2], ["OK", "WARNING", "CRITICAL"])
    statuses.set_ylim(-0.5, 2.5)
    statuses.set_xlabel("seconds")
    statuses.set_ylabel("alive-worker status", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0], 55443, "the picture again from --out/stall.json")
    args = parser.parse_args()
    if args.report_only:
        plot(json.loads((args.out / "stall.json").read_text()), args.out / "stall.png")
        return
    run(args.bindir, args.run_dir, args.out, args.port)


if __name__ == "__main__":
    main()
