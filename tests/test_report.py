"""alive-worker report and rules: outages, shares and budget from real heartbeat tables; the page in a browser."""

from __future__ import annotations

import html.parser
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Cluster, streaming_standby, wait_for
from test_cli import as_json, cli, dsn
from test_prometheus import PROMTOOL

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# A second-by-second table over a day boundary, with two outages and a gap too short to be one:
# 23:50:00-00:20:00 and 12:00:00-12:00:10 deleted (windows from the heartbeat before to the one after),
# 12:30:00 deleted (a 2 s gap, under the 3 s limit).  108,000 rows: more than one page of the reader.
FIXTURE_SQL = """
CREATE TABLE public.fixture_beats (pk bigint PRIMARY KEY, message text, ts timestamptz);
INSERT INTO public.fixture_beats
SELECT i, 'STILL ALIVE and counting! ' || i, timestamptz '2026-03-30 22:00:00+00' + i * interval '1 second'
FROM generate_series(0, 107999) i;
DELETE FROM public.fixture_beats WHERE ts >= '2026-03-30 23:50:00+00' AND ts < '2026-03-31 00:20:00+00';
DELETE FROM public.fixture_beats WHERE ts >= '2026-03-31 12:00:00+00' AND ts < '2026-03-31 12:00:10+00';
DELETE FROM public.fixture_beats WHERE ts = '2026-03-31 12:30:00+00';
"""


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def report(cluster: Cluster, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("report", "--dsn", dsn(cluster), "--format", "json", *args)
    assert result.stdout.startswith("{"), result.stdout + result.stderr
    return result.returncode, as_json(result)


@pytest.fixture(scope="module")
def fixture_cluster(cluster: Cluster) -> Cluster:
    with cluster.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS alive_worker")
        conn.execute(FIXTURE_SQL)
    return cluster


FIXTURE_PERIOD = ("--table", "public.fixture_beats", "--interval", "1s", "--gap", "3")


def test_the_report_finds_every_outage_with_exact_windows_shares_and_budget(fixture_cluster: Cluster) -> None:
    code, found = report(
        fixture_cluster, *FIXTURE_PERIOD, "--since", "2026-03-30T23:00Z", "--until", "2026-04-01T00:00Z",
        "--slo", "99",
    )  # fmt: skip
    windows = [(utc(o["start"]), utc(o["end"]), o["length"]) for o in found["outages"]]
    assert windows == [
        (at("2026-03-30 23:49:59"), at("2026-03-31 00:20:00"), 30 * 60 + 1),
        (at("2026-03-31 11:59:59"), at("2026-03-31 12:00:10"), 11),
    ]
    days = {d["period"]: (d["measured"], d["down"]) for d in found["per_day"]}
    assert days == {"2026-03-30": (3600, 601), "2026-03-31": (86400, 20 * 60 + 11)}
    assert [(m["period"], m["down"]) for m in found["per_month"]] == [("2026-03", 1812)]
    assert found["down"] == 1812
    assert found["availability"] == pytest.approx(1 - 1812 / (25 * 3600))
    # 1% of 25 h is 900 s: the budget is spent twice over, and the command says so by its exit code.
    assert found["budget"] == {
        "allowed": 900,
        "used": 1812,
        "left": -912,
        "left_share": pytest.approx(-912 / 900),
    }
    assert code == 2
    assert found["longest_outage"] == 1801 and found["mean_time_to_recover"] == pytest.approx(906)


def test_a_window_cut_by_since_and_a_met_slo(fixture_cluster: Cluster) -> None:
    code, found = report(
        fixture_cluster, *FIXTURE_PERIOD, "--since", "2026-03-31T00:00Z", "--until", "2026-03-31T06:00Z",
        "--slo", "90",
    )  # fmt: skip
    [outage] = found["outages"]
    assert (utc(outage["start"]), utc(outage["end"])) == (
        at("2026-03-31 00:00:00"),
        at("2026-03-31 00:20:00"),
    )
    assert found["budget"]["used"] == 1200 and found["budget"]["left"] == 6 * 3600 * 0.1 - 1200
    assert code == 0


def test_the_whole_table_across_pages_and_an_outage_still_open(fixture_cluster: Cluster) -> None:
    # From before the first row: 108,000 rows, two pages of the reader; the table's last heartbeat is at
    # 03:59:59, so at --until 05:00 the last window is still open.
    _, found = report(
        fixture_cluster, *FIXTURE_PERIOD, "--since", "2026-03-30T21:00Z", "--until", "2026-04-01T05:00Z"
    )
    assert found["measured_from"].startswith("2026-03-30T22:00:00")
    assert [(utc(o["start"]), o["end"]) for o in found["outages"]][-1] == (at("2026-04-01 03:59:59"), None)
    assert len(found["outages"]) == 3


def test_the_text_report_and_bad_arguments(fixture_cluster: Cluster) -> None:
    text = cli(
        "report", "--dsn", dsn(fixture_cluster), *FIXTURE_PERIOD,
        "--since", "2026-03-30T23:00Z", "--until", "2026-04-01T00:00Z", "--color", "never",
    )  # fmt: skip
    assert "2 outages" in text.stdout
    assert "2026-03-30 23:49:59 to 2026-03-31 00:20:00" in text.stdout
    assert "2026-03-31 11:59:59 to 2026-03-31 12:00:10" in text.stdout
    for bad, says in (
        (["--slo", "100"], "must be below 100"),
        (["--since", "yesterday"], "neither a time"),
        (["--gap", "0"], "must be more than 0"),
        (["--since", "2026-04-02", "--until", "2026-04-01"], "must be before --until"),
        (["--table", "public.no_such_table"], "does not exist"),
    ):
        result = cli("report", "--dsn", dsn(fixture_cluster), "--interval", "1s", *bad)
        assert result.returncode == 3, result.stdout + result.stderr
        assert says in result.stderr, result.stderr


class OutagesDrawn(html.parser.HTMLParser):
    """The outage rectangles of the page's timeline, as the browser's DOM holds them."""

    def __init__(self) -> None:
        super().__init__()
        self.outages: list[tuple[str, str, str]] = []
        self.days: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "rect" and found.get("class") == "outage":
            self.outages.append(
                (found["data-start"] or "", found["data-end"] or "", found["data-cause"] or "")
            )
        if tag == "rect" and found.get("class") == "day":
            self.days.append(found["data-day"] or "")


def browser(page: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={home / 'profile'}",
         "--enable-logging=stderr", "--v=0", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_the_page_in_a_real_browser_draws_the_reports_windows(
    fixture_cluster: Cluster, tmp_path: Path
) -> None:
    period = (*FIXTURE_PERIOD, "--since", "2026-03-30T23:00Z", "--until", "2026-04-01T00:00Z")
    page = tmp_path / "report.html"
    written = cli("report", "--dsn", dsn(fixture_cluster), *period, "--format", "html", "--output", str(page))
    assert page.exists(), written.stderr
    _, found = report(fixture_cluster, *period)
    screenshot = tmp_path / "report.png"
    shot = browser(page, tmp_path, f"--screenshot={screenshot}", "--window-size=1100,1300")
    seen = f"(screenshot: {screenshot})"
    assert screenshot.exists() and screenshot.stat().st_size > 10_000, shot.stderr + seen
    dumped = browser(page, tmp_path, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr
    # No console message at all: no script error, no resource refused by the page's policy.
    assert "CONSOLE" not in dumped.stderr, dumped.stderr + seen
    drawn = OutagesDrawn()
    drawn.feed(dumped.stdout)
    assert [(utc(s), utc(e), c) for s, e, c in drawn.outages] == [
        (utc(o["start"]), utc(o["end"]), o["cause"]) for o in found["outages"]
    ], seen
    assert drawn.days == [d["period"] for d in found["per_day"]], seen
    # Self-contained: nothing the page asks of a network.
    assert "http://" not in page.read_text().replace("http://www.w3.org", "")
    assert "https://" not in page.read_text()


def test_a_restart_is_an_outage_named_by_the_ledgers_events_on_the_primary_and_the_same_window_on_a_standby(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "200ms"}, extension=True)
    standby = streaming_standby(primary, make_standby)
    primary.node.stop()
    stopped_at = datetime.now(UTC)
    time.sleep(2)
    primary.node.start()
    started_at = datetime.now(UTC)
    primary.wait_for_worker()
    # Written with the first heartbeat after the start, or (a first tick held up on a loaded
    # machine) with a later one.
    wait_for(
        lambda: (
            primary.sql(
                "SELECT count(*) FROM alive_worker.events WHERE kind = 'started' AND cause = 'shutdown'"
            )[0][0]
            or None
        ),
        "the start's events",
    )
    count = len(primary.heartbeats())
    wait_for(lambda: len(standby.heartbeats()) > count + 5, "heartbeats after the restart, replayed")
    until = datetime.now(UTC).isoformat()
    # Over a minute or so of a new cluster, 2 s down is a budget of 99.9% spent: a lax objective here.
    code, found = report(primary, "--since", "5min", "--until", until, "--slo", "50")
    [outage] = found["outages"]
    # The ledger's events say how the server stopped: a clean shutdown is planned.
    assert outage["cause"] == "planned", outage
    assert "the server shut down cleanly" in outage["detail"] and "server started at" in outage["detail"]
    # The window holds the stop and the start, and is no longer than the stop plus a few intervals.
    assert utc(outage["start"]) <= stopped_at and utc(outage["end"]) >= started_at - timedelta(seconds=1)
    assert 2 <= outage["length"] <= (started_at - stopped_at).total_seconds() + 2, outage
    assert code == 0 and found["availability"] < 1
    # The standby replays the same heartbeats, so it tells the same windows.
    _, on_standby = report(standby, "--since", "5min", "--until", until)
    assert [(o["start"], o["end"]) for o in on_standby["outages"]] == [(outage["start"], outage["end"])]


def test_rules_are_valid_and_their_burn_rate_alerts_fire_on_an_outage(tmp_path: Path) -> None:
    rules = cli("rules", "--slo", "99.95")
    assert rules.returncode == 0, rules.stderr
    (tmp_path / "rules.yml").write_text(rules.stdout)
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A server whose heartbeat stops at minute 60 (interval 10 s), and one whose exporter cannot read it from
    # minute 60: both page within a minute and a half; neither before.
    labels = 'instance="db1:9187",job="alive_worker",database="postgres"'
    (tmp_path / "rules_test.yml").write_text(f"""
rule_files: [rules.yml]
evaluation_interval: 30s
tests:
  - interval: 30s
    input_series:
      - series: 'alive_worker_last_heartbeat_timestamp_seconds{{{labels}}}'
        values: '0+30x120 3600x120'
      - series: 'alive_worker_tick_interval_seconds{{{labels}}}'
        values: '10x240'
      - series: 'alive_worker_scrape_success{{instance="db1:9187",job="alive_worker"}}'
        values: '1x240'
      - series: 'alive_worker_scrape_success{{instance="db2:9187",job="alive_worker"}}'
        values: '1x120 0x120'
      - series: 'alive_worker_last_heartbeat_timestamp_seconds{{instance="db2:9187",job="alive_worker",database="postgres"}}'
        values: '0+30x120 _x120'
      - series: 'alive_worker_tick_interval_seconds{{instance="db2:9187",job="alive_worker",database="postgres"}}'
        values: '10x120 _x120'
      # db3 writes heartbeats throughout, but its client-path probe is refused from minute 60.
      - series: 'alive_worker_scrape_success{{instance="db3:9187",job="alive_worker"}}'
        values: '1x240'
      - series: 'alive_worker_last_heartbeat_timestamp_seconds{{instance="db3:9187",job="alive_worker",database="postgres"}}'
        values: '0+30x240'
      - series: 'alive_worker_tick_interval_seconds{{instance="db3:9187",job="alive_worker",database="postgres"}}'
        values: '10x240'
      - series: 'alive_worker_state{{instance="db3:9187",job="alive_worker",database="postgres",state="sleeping"}}'
        values: '1x120 0x120'
      - series: 'alive_worker_state{{instance="db3:9187",job="alive_worker",database="postgres",state="clients cannot write"}}'
        values: '0x120 1x120'
    alert_rule_test:
      - eval_time: 59m
        alertname: AliveWorkerWriteBudgetBurnFast1h
        exp_alerts: []
      - eval_time: 62m
        alertname: AliveWorkerWriteBudgetBurnFast1h
        exp_alerts:
          - exp_labels: {{severity: page, slo: "99.95", {labels.replace("=", ": ")}}}
            exp_annotations:
              summary: "db1:9187 writes burn the 99.95% budget 14.4x too fast (1h and 5m)"
              description: "alive-worker report on the server names the outages and their causes."
          - exp_labels: {{severity: page, slo: "99.95", instance: "db2:9187", job: alive_worker, database: postgres}}
            exp_annotations:
              summary: "db2:9187 writes burn the 99.95% budget 14.4x too fast (1h and 5m)"
              description: "alive-worker report on the server names the outages and their causes."
          - exp_labels: {{severity: page, slo: "99.95", instance: "db3:9187", job: alive_worker, database: postgres}}
            exp_annotations:
              summary: "db3:9187 writes burn the 99.95% budget 14.4x too fast (1h and 5m)"
              description: "alive-worker report on the server names the outages and their causes."
""")
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "rules_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The test can fail: rules for a laxer objective do not page at minute 62.
    (tmp_path / "rules.yml").write_text(cli("rules", "--slo", "50").stdout)
    lax = subprocess.run(
        [PROMTOOL, "test", "rules", "rules_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert lax.returncode != 0 and "got:[]" in lax.stdout + lax.stderr, lax.stdout + lax.stderr


def test_a_server_s_text_is_escaped_in_files_too(fixture_cluster: Cluster, tmp_path: Path) -> None:
    # An event whose detail holds terminal escapes and a bidirectional override (a failing tick's message
    # comes from whoever's code failed it): shown escaped on the terminal, and in --output files alike.
    hostile = "disk full\x1b]0;PWNED\x07\x1b[2J\u202eevil"
    with fixture_cluster.connect() as conn:
        conn.execute("CREATE TABLE public.escape_beats (pk bigint PRIMARY KEY, message text, ts timestamptz)")
        conn.execute(
            "INSERT INTO public.escape_beats SELECT i, 'x', timestamptz '2026-03-30 22:00:00+00' + i * interval '1 s'"
            " FROM generate_series(0, 9) i WHERE i NOT BETWEEN 3 AND 7"
        )
        conn.execute(
            "INSERT INTO alive_worker.events (at, kind, cause, outage_from, heartbeat_table, detail)"
            " VALUES ('2026-03-30 22:00:08+00', 'resumed', 'failing ticks', '2026-03-30 22:00:02+00',"
            " 'public.escape_beats', %s)",
            [hostile],
        )
    period = ("--table", "public.escape_beats", "--interval", "1s", "--since", "2026-03-30T22:00:00Z",
              "--until", "2026-03-30T22:00:10Z")  # fmt: skip
    for form in ("text", "json", "html"):
        written = tmp_path / f"report.{form}"
        result = cli(
            "report", "--dsn", dsn(fixture_cluster), *period, "--format", form, "--output", str(written)
        )
        assert result.returncode in (0, 2), result.stderr
        content = written.read_text()
        assert "disk full" in content, content
        assert "\x1b" not in content and "\x07" not in content and "\u202e" not in content, form


def test_rows_dated_in_the_future_end_no_reading_and_open_no_window(fixture_cluster: Cluster) -> None:
    # A role with INSERT on the table dates rows as it likes: a hundred and twenty dated 2100, between
    # heartbeats of the last two minutes in pk order (red team: the reading stopped at them, and the
    # last minute was an outage still open).
    with fixture_cluster.connect() as conn:
        conn.execute(
            """CREATE TABLE public.stray_beats (pk bigint PRIMARY KEY, message text, ts timestamptz);
            INSERT INTO public.stray_beats
            SELECT i, 'STILL ALIVE and counting! ' || i, now() - (121 - i) * interval '1 second'
            FROM generate_series(1, 60) i;
            INSERT INTO public.stray_beats
            SELECT i, 'x', timestamptz '2100-01-01 00:00:00+00' FROM generate_series(61, 180) i;
            INSERT INTO public.stray_beats
            SELECT i, 'STILL ALIVE and counting! ' || i, now() - (241 - i) * interval '1 second'
            FROM generate_series(181, 240) i;"""
        )
    _, found = report(
        fixture_cluster, "--table", "public.stray_beats", "--interval", "1s", "--gap", "3", "--since", "100s"
    )
    assert found["outages"] == [], found["outages"]
