"""etcd and Patroni nodes on 127.0.0.1, with alive_worker preloaded through Patroni.

Used by tests/test_patroni.py and by make bench (bench/ha.py).  Everything runs
as the server's OS user (a root caller's children switch to it themselves,
so that the PIDs it holds are Patroni's and etcd's), on free ports, in one
directory; stop() ends every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

# Re-exported for bench/ha.py, which drives the same cluster.
from conftest import free_port as free_port
from conftest import wait_for as wait_for

SCOPE = "alive"
ETCD = "/usr/bin/etcd"


class Node:
    """One Patroni node and the PostgreSQL it runs."""

    def __init__(self, cluster: PatroniCluster, index: int) -> None:
        self.cluster = cluster
        self.name = f"node{index}"
        self.dir = cluster.base_dir / self.name
        self.data_dir = self.dir / "data"
        self.config = self.dir / "patroni.yml"
        self.patroni_log = self.dir / "patroni.log"
        self.pg_log_dir = self.dir / "log"
        self.port = free_port()
        self.rest_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self, settings: dict[str, str]) -> None:
        self.dir.mkdir(parents=True)
        self.pg_log_dir.mkdir()
        config = {
            "scope": SCOPE,
            "name": self.name,
            "restapi": {
                "listen": f"127.0.0.1:{self.rest_port}",
                "connect_address": f"127.0.0.1:{self.rest_port}",
            },
            "etcd3": {"hosts": [f"127.0.0.1:{self.cluster.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": self.cluster.ttl,
                    "loop_wait": 1,
                    "retry_timeout": 3,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "postgresql": {
                        # pg_rewind lets a failed leader rejoin; it needs
                        # wal_log_hints (or data checksums).
                        "use_pg_rewind": True,
                        "use_slots": True,
                        # Patroni takes these from the DCS alone, never from
                        # a node's own postgresql.parameters.
                        "parameters": {
                            "wal_log_hints": "on",
                            "hot_standby": "on",
                            "max_worker_processes": "16",
                            **self.cluster.dcs_settings,
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.port}",
                "connect_address": f"127.0.0.1:{self.port}",
                "data_dir": str(self.data_dir),
                "bin_dir": self.cluster.bin_dir,
                "pgpass": str(self.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": self.cluster.user},
                    "replication": {"username": self.cluster.user},
                    "rewind": {"username": self.cluster.user},
                },
                # As an operator preloads it: in Patroni's postgresql.parameters.
                "parameters": {
                    "shared_preload_libraries": "alive_worker",
                    "unix_socket_directories": str(self.dir),
                    "logging_collector": "on",
                    "log_directory": str(self.pg_log_dir),
                    "log_filename": "postgresql.log",
                    "log_line_prefix": "%m [%p] ",
                    "log_min_messages": "info",
                    **settings,
                },
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
            },
        }
        # JSON is YAML: no YAML writer needed.
        self.config.write_text(json.dumps(config, indent=1))
        self.cluster.give_to_server_user(self.dir)

    def start(self) -> None:
        with open(self.patroni_log, "ab") as log:
            self.process = subprocess.Popen(
                [self.cluster.patroni, str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.cluster.as_server_user,
            )

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """Patroni and the postmaster killed together, as when the node is lost."""
        postmaster = self.postmaster_pid()
        if self.process is not None:
            self.cluster.signal(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None
        if postmaster is not None:
            self.cluster.signal(postmaster, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.cluster.signal(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.cluster.signal(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
        # Patroni stops PostgreSQL on SIGTERM; a killed one may have left it running.
        postmaster = self.postmaster_pid()
        if postmaster is not None:
            self.cluster.signal(postmaster, signal.SIGKILL)

    def patroni_state(self) -> dict[str, Any] | None:
        """Patroni's REST answer about this node: role, state, timeline; None if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}/patroni", timeout=2) as answer:
                return dict(json.load(answer))
        except urllib.error.HTTPError as error:
            # 503 for a node that is not healthy still describes it.
            return dict(json.load(error))
        except (OSError, ValueError):
            return None

    def role(self) -> str | None:
        state = self.patroni_state()
        if state is None or state.get("state") != "running":
            return None
        role = str(state.get("role"))
        return "primary" if role in ("primary", "master") else role

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.cluster.user,
            dbname="postgres",
            autocommit=True,
            **kwargs,
        )

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def pg_log(self) -> str:
        path = self.pg_log_dir / "postgresql.log"
        return path.read_text(errors="replace") if path.exists() else ""


class PatroniCluster:
    """etcd and `count` Patroni nodes of one scope."""

    def __init__(
        self,
        base_dir: Path,
        bin_dir: str,
        patroni_bin_dir: str,
        count: int = 2,
        ttl: int = 20,
        settings: dict[str, str] | None = None,
        dcs_settings: dict[str, str] | None = None,
        user: str = "postgres",
    ) -> None:
        self.base_dir = base_dir
        self.bin_dir = bin_dir
        self.patroni = str(Path(patroni_bin_dir) / "patroni")
        self.patronictl = str(Path(patroni_bin_dir) / "patronictl")
        self.ttl = ttl
        self.settings = settings or {}
        self.dcs_settings = dcs_settings or {}
        self.user = user
        # A root caller's children become the server user before they run.
        self.as_server_user: dict[str, Any] = (
            {
                "user": user,
                "group": user,
                "extra_groups": [],
                "env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            }
            if os.geteuid() == 0
            else {}
        )
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.etcd: subprocess.Popen[bytes] | None = None
        self.nodes = [Node(self, i) for i in range(count)]

    def give_to_server_user(self, path: Path) -> None:
        if os.geteuid() == 0:
            for entry in [path, *path.rglob("*")]:
                shutil.chown(entry, self.user, self.user)

    def signal(self, pid: int, number: signal.Signals) -> None:
        # Our processes run as the server user; root may signal them directly.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)

    def start(self, timeout: float = 90) -> Node:
        """etcd, then the nodes; returns the leader once every node runs and the replicas stream."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        etcd_dir = self.base_dir / "etcd"
        etcd_dir.mkdir()
        self.give_to_server_user(etcd_dir)
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        with open(self.base_dir / "etcd.log", "ab") as log:
            self.etcd = subprocess.Popen(
                [ETCD, "--name", "etcd0", "--data-dir", str(etcd_dir / "data"),
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"etcd0={peer}", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self.as_server_user,
            )  # fmt: skip
        wait_for(self.etcd_healthy, "etcd to answer", 30)
        for node in self.nodes:
            node.write_config(self.settings)
        # The first node bootstraps alone, the others copy it.
        self.nodes[0].start()
        wait_for(lambda: self.nodes[0].role() == "primary", "the first node to bootstrap", timeout)
        for node in self.nodes[1:]:
            node.start()
        return self.wait_for_roles(timeout=timeout)

    def etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2) as answer:
                return bool(json.load(answer).get("health") == "true")
        except (OSError, ValueError):
            return False

    def leader(self) -> Node | None:
        leaders = [node for node in self.nodes if node.role() == "primary"]
        return leaders[0] if len(leaders) == 1 else None

    def wait_for_roles(self, nodes: Sequence[Node] | None = None, timeout: float = 60) -> Node:
        """One leader, and every other node of `nodes` a replica streaming from it."""
        members = list(nodes or self.nodes)

        def settled() -> Node | None:
            leader = self.leader()
            if leader is None or leader not in members:
                return None
            for node in members:
                if node is leader:
                    continue
                state = node.patroni_state()
                if not state or node.role() != "replica" or state.get("replication_state") != "streaming":
                    return None
            return leader

        return wait_for(settled, "one leader and streaming replicas", timeout)

    def patronictl_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.patronictl, "-c", str(self.nodes[0].config), *args],
            capture_output=True,
            **self.as_server_user,
            text=True,
            timeout=120,
            check=False,
        )

    def switchover(self, leader: Node, candidate: Node) -> subprocess.CompletedProcess[str]:
        return self.patronictl_run(
            "switchover", SCOPE, "--leader", leader.name, "--candidate", candidate.name, "--force"
        )

    def multi_host_dsn(self, **extra: str) -> str:
        hosts = ",".join("127.0.0.1" for _ in self.nodes)
        ports = ",".join(str(node.port) for node in self.nodes)
        words = [f"host={hosts}", f"port={ports}", "dbname=postgres", f"user={self.user}"]
        words += [f"{key}={value}" for key, value in extra.items()]
        return " ".join(words)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.etcd is not None:
            self.signal(self.etcd.pid, signal.SIGTERM)
            try:
                self.etcd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.signal(self.etcd.pid, signal.SIGKILL)
                self.etcd.wait(timeout=10)
            self.etcd = None


# Patroni raises a smaller ttl to 20; the lines of each log shown after a failure.
TTL = 20
TAIL = 60


def two_node_cluster(
    request: Any, base: Path, bin_dir: str, settings: dict[str, str]
) -> Iterator[PatroniCluster]:
    """A leader and a replica on etcd, for a fixture to yield from: stopped at the end, and each node's
    Patroni and PostgreSQL log tail printed when the test failed."""
    import sys

    import pytest

    if not Path(ETCD).exists():
        pytest.fail(f"no {ETCD}: scripts/setup-host installs Debian's etcd-server")
    cluster = PatroniCluster(
        base,
        bin_dir=bin_dir,
        patroni_bin_dir=str(Path(sys.executable).parent),
        count=2,
        ttl=TTL,
        settings=settings,
    )
    try:
        yield cluster
    finally:
        report = getattr(request.node, "report_call", None)
        cluster.stop()
        if report is None or report.failed:
            for node in cluster.nodes:
                for path in (node.patroni_log, node.pg_log_dir / "postgresql.log"):
                    if path.exists():
                        tail = path.read_text(errors="replace").splitlines()[-TAIL:]
                        print(f"\n---- last lines of {path} ----\n" + "\n".join(tail))
