"""CPU per tick, service time and memory: ticking at 10 ms in alternating rounds, and back to back."""

from __future__ import annotations

import statistics
import time

from cluster import Cluster
from common import (
    ALIVE,
    BACK_TO_BACK_SECONDS,
    CPU_ROUNDS,
    CPU_SECONDS,
    GROWTH_MAX_SECONDS,
    GROWTH_TICKS,
    MEMORY_SETTLE_SECONDS,
    REF,
    Figures,
    log,
    worker_key,
    worker_settings,
)
from lateness import lateness_naive, lateness_on_grid, percentile
from procfs import cpu_ns, private_pss_kb, pss_kb


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
