#!/usr/bin/env python3
"""report_picture.py [PNG]: README's picture of alive-worker report --format html, drawn by Debian's chromium
from a month of made-up heartbeats (four outages, two of them explained by a server start)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alive_worker.cli.report import as_dict
from alive_worker.cli.report_page import page
from alive_worker.ledger import ServerStart, build_ledger

START = datetime(2026, 11, 1, tzinfo=UTC)
INTERVAL = timedelta(seconds=10)
OUTAGES = [
    (START + timedelta(days=3, hours=4), timedelta(minutes=12)),
    (START + timedelta(days=9, hours=1), timedelta(minutes=3)),
    (START + timedelta(days=17, hours=13), timedelta(minutes=40)),
    (START + timedelta(days=25), timedelta(seconds=50)),
]
STARTS = [
    ServerStart(START + timedelta(days=9, hours=1, minutes=1), after_crash=False),
    ServerStart(START + timedelta(days=17, hours=13, minutes=20), after_crash=True),
]


def heartbeats(end: datetime) -> list[datetime]:
    times, moment = [], START
    while moment < end:
        down = [(at, length) for at, length in OUTAGES if at <= moment < at + length]
        if down:
            moment = down[0][0] + down[0][1]
            continue
        times.append(moment)
        moment += INTERVAL
    return times


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/report.png").resolve()
    end = START + timedelta(days=30)
    ledger = build_ledger(heartbeats(end), START, end, 3 * INTERVAL, STARTS)
    with tempfile.TemporaryDirectory() as home:
        html = Path(home) / "report.html"
        html.write_text(page(as_dict(ledger, "public.log_table", INTERVAL, 99.95), ledger))
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={home}/profile",
             f"--screenshot={target}", "--window-size=1040,1000", html.as_uri()],
            check=True, capture_output=True,
        )  # fmt: skip
    print(target)


if __name__ == "__main__":
    main()
