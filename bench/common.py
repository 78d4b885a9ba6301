"""What every phase of make bench shares: names, phase lengths, the figures, a worker's settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def bench_arguments(description: str, port: int, report_only_help: str) -> argparse.ArgumentParser:
    """The arguments scripts/bench gives every bench program; each adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bindir", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--report-only", action="store_true", help=report_only_help)
    return parser


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


@dataclass
class Figures:
    """Everything measured, by phase; written out as bench.json."""

    values: dict[str, Any] = field(default_factory=dict)

    def put(self, key: str, value: Any) -> None:
        self.values[key] = value


def worker_key(worker: str) -> str:
    return {ALIVE: "alive", REF: "ref"}[worker]


def worker_settings(worker: str, interval: str = "10s", back_to_back: str = "off") -> dict[str, str]:
    prefix = {ALIVE: "alive_worker", REF: "alive_worker_ref"}[worker]
    return {f"{prefix}.interval": interval, f"{prefix}.back_to_back": back_to_back}
