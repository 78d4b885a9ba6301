"""What the preload costs others: pgbench's throughput, a client's connection time and backend memory."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from cluster import Cluster, running
from common import (
    BACK_TO_BACK_SECONDS,
    BACKENDS,
    CLIENT_ROUNDS,
    CONNECTIONS,
    MESSAGE,
    SERVER_USER,
    Figures,
    log,
)
from lateness import percentile
from procfs import uss_kb


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
