"""The report: the table of figures against their goals, the picture, the machine."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ha
from common import CPU_ROUNDS, DRIFT_TICKS, GROWTH_TICKS, STARTS, log
from lateness import percentile


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
