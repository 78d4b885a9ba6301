"""Prometheus: alive-worker metrics and exporter, the shipped rules, and a real Prometheus scraping them."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SQL_VERSION, Cluster, free_port, streaming_standby, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_cli import CLI, cli, dsn

MONITORING = Path(__file__).parent.parent / "docs" / "monitoring"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


# ---- the rules ----


def test_rules_are_valid_and_pass_their_unit_tests(tmp_path: Path) -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=MONITORING / "prometheus",
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=MONITORING / "prometheus",
                            capture_output=True, text=True)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The unit tests can fail: a rule that says something else is caught.
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(MONITORING / "prometheus" / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    rules.write_text(
        rules.read_text().replace(
            "alive_worker:heartbeat_age_intervals > 10", "alive_worker:heartbeat_age_intervals > 30"
        )
    )
    broken = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert broken.returncode != 0 and "AliveWorkerHeartbeatStale" in broken.stdout + broken.stderr


# ---- alive-worker metrics ----


def test_metrics_prints_the_workers_in_the_text_format(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"databases": "postgres, db_missing"}, extension=True)
    cluster.wait_for_heartbeats(5)
    result = cli("metrics", "--dsn", dsn(cluster))
    assert result.returncode == 0, result.stderr
    found = samples(result.stdout)
    assert value(found, "alive_worker_scrape_success") == 1
    assert value(found, "alive_worker_up", database="postgres") == 1
    assert value(found, "alive_worker_up", database="db_missing") == 0
    assert value(found, "alive_worker_ticks_total", database="postgres", result="ok") >= 5
    assert value(found, "alive_worker_ticks_total", database="postgres", result="failed") == 0
    assert value(found, "alive_worker_tick_interval_seconds", database="postgres") == 0.1
    last = value(found, "alive_worker_last_heartbeat_timestamp_seconds", database="postgres")
    assert abs(last - datetime.now(UTC).timestamp()) < 30
    assert 0 < value(found, "alive_worker_commit_wait_seconds", database="postgres") < 1
    assert value(found, "alive_worker_connect_failures", database="db_missing") >= 1
    states = {
        dict(labels)["database"]: dict(labels)["state"]
        for (name, labels) in found
        if name == "alive_worker_state"
    }
    assert states["db_missing"] in ("cannot connect", "backing off", "connecting")
    [build] = [dict(labels) for (name, labels) in found if name == "alive_worker_build_info"]
    assert build["extension_version"] == SQL_VERSION and build["server_version"].startswith(
        str(cluster.server_version_num() // 10000)
    )
    # A database whose worker cannot write has no heartbeat timestamp at all.
    assert (
        "alive_worker_last_heartbeat_timestamp_seconds",
        frozenset({("database", "db_missing")}),
    ) not in found


def test_metrics_output_is_written_atomically_and_says_when_a_server_is_unreadable(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_heartbeats(2)
    output = tmp_path / "alive_worker.prom"
    assert cli("metrics", "--output", str(output), "--dsn", dsn(cluster)).returncode == 0
    assert value(samples(output.read_text()), "alive_worker_up", database="postgres") == 1
    assert stat.S_IMODE(output.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alive_worker.prom"]

    # Two servers, one of them down: the file says so, labelled by server, and the exit is UNKNOWN.
    down = f"host=127.0.0.1 port={free_port()} connect_timeout=5"
    result = cli("metrics", "--output", str(output), "--dsn", dsn(cluster), "--also-dsn", down)
    assert result.returncode == 3 and "1 server(s) could not be read" in result.stderr
    found = samples(output.read_text())
    here = f"{cluster.node.host}:{cluster.node.port}"
    assert value(found, "alive_worker_scrape_success", server=here) == 1
    assert (
        value(found, "alive_worker_scrape_success", server=down.split()[0][5:] + ":" + down.split()[1][5:])
        == 0
    )
    assert value(found, "alive_worker_up", server=here, database="postgres") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alive_worker.prom"]


# ---- a real Prometheus ----


class Prometheus:
    """Prometheus on a loopback port, scraping the exporter every second, with alerts.yml loaded."""

    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shutil.copy(MONITORING / "prometheus" / "alerts.yml", directory / "alerts.yml")
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n  - alerts.yml\n"
            f"scrape_configs:\n  - job_name: alive_worker\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = (directory / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self.ready, "Prometheus to be ready", timeout=60)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def exporter_and_prometheus(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster], tmp_path: Path
) -> Iterator[tuple[Cluster, Cluster, Prometheus]]:
    primary = make_cluster(extension=True)
    standby = streaming_standby(primary, make_standby)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    exporter = subprocess.Popen(
        [str(CLI), "exporter", "--listen", f"127.0.0.1:{port}", "--dsn", dsn(primary), "--also-dsn", dsn(standby)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    os.chmod(tmp_path, 0o755)
    prometheus = None
    try:
        assert exporter.stdout is not None
        assert exporter.stdout.readline().startswith(
            f"alive-worker exporter: serving http://127.0.0.1:{port}/metrics"
        )
        prometheus = Prometheus(tmp_path, f"127.0.0.1:{port}")
        yield primary, standby, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        exporter.terminate()
        exporter.wait(timeout=30)


def test_real_prometheus_sees_heartbeats_then_the_stale_alert(
    exporter_and_prometheus: tuple[Cluster, Cluster, Prometheus],
) -> None:
    primary, standby, prometheus = exporter_and_prometheus
    server = f"{primary.node.host}:{primary.node.port}"
    heartbeat = f'alive_worker_last_heartbeat_timestamp_seconds{{server="{server}",database="postgres"}}'

    def newest() -> float | None:
        result = prometheus.query(heartbeat)
        return float(result[0]["value"][1]) if result else None

    first = wait_for(newest, "a heartbeat timestamp scraped by Prometheus", timeout=60)
    later = wait_for(
        lambda: t if (t := newest()) and t > first else None, "the heartbeat timestamp to advance", timeout=30
    )
    assert later > first
    assert prometheus.query(f'alive_worker_up{{server="{server}"}}')[0]["value"][1] == "1"
    [target] = prometheus.api("targets")["activeTargets"]
    assert target["health"] == "up", target

    # Every panel of the dashboard returns data from this Prometheus.
    dashboard = json.loads((MONITORING / "grafana" / "alive_worker.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        wait_for(lambda e=expr: prometheus.query(e), f"data for the panel query {expr}", timeout=60)  # type: ignore[misc]

    # The worker stops: the heartbeat goes stale, and the alert goes pending (its "for" is 1 min).
    primary.sql("SELECT alive_worker.stop('postgres')")

    def stale_alert() -> dict[str, Any] | None:
        alerts = prometheus.api("alerts")["alerts"]
        return next(
            (a for a in alerts if a["labels"]["alertname"] == "AliveWorkerHeartbeatStale"
             and a["labels"].get("server") == server),
            None,
        )  # fmt: skip

    alert = wait_for(stale_alert, "the stale-heartbeat alert", timeout=60)
    assert alert["state"] == "pending", alert
    assert alert["labels"]["database"] == "postgres" and alert["labels"]["severity"] == "critical"
    down = wait_for(
        lambda: [
            a for a in prometheus.api("alerts")["alerts"] if a["labels"]["alertname"] == "AliveWorkerDown"
        ],
        "the worker-down alert",
        timeout=60,
    )
    assert down[0]["labels"]["server"] == server
    # The standby's worker waits for promotion: never "down".
    standby_server = f"{standby.node.host}:{standby.node.port}"
    assert all(a["labels"].get("server") != standby_server for a in down)
