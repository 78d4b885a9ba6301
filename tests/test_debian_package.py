"""The Debian package, installed by apt: what it owns works, with Debian's Python packages.

make installcheck-deb installs build/deb/*.deb and runs these with
ALIVE_WORKER_PACKAGE naming the server's package (postgresql-15-alive-worker);
without it they are skipped, since a make install tree is not a package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BIN_DIR, MESSAGE, PKGLIB_DIR, SQL_VERSION, Cluster

PACKAGE = os.environ.get("ALIVE_WORKER_PACKAGE", "")
pytestmark = pytest.mark.skipif(not PACKAGE, reason="ALIVE_WORKER_PACKAGE is not set (make installcheck-deb)")

ENVIRONMENT = Path(PKGLIB_DIR) / "alive_worker"
# The command on PATH of a session that has no server's bin directory in it.
SYSTEM_PATH = "/usr/bin:/bin"


def owner(path: Path | str) -> str:
    """The package that dpkg says owns path ('' for none)."""
    result = subprocess.run(["dpkg-query", "-S", str(path)], capture_output=True, text=True)
    return result.stdout.split(":")[0] if result.returncode == 0 else ""


def dsn(cluster: Cluster) -> str:
    return f"host={cluster.node.host} port={cluster.node.port} dbname=postgres user={cluster.node.os_ops.username}"


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Runs a command with no PG* variables and the system's PATH."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**clean, "PATH": SYSTEM_PATH}
    )


def test_the_server_loads_what_the_package_owns() -> None:
    for path in (
        Path(PKGLIB_DIR) / "alive_worker.so",
        ENVIRONMENT / "bin" / "python3",
        Path(BIN_DIR) / "alive-worker",
    ):
        assert owner(path) == PACKAGE, f"{path} is not {PACKAGE}'s"
    libraries = list(ENVIRONMENT.glob("lib/python3*/site-packages/alive_worker/_native*.so"))
    assert len(libraries) == 1, f"not one embedding library in {ENVIRONMENT}: {libraries}"
    assert owner(libraries[0]) == PACKAGE


def test_the_environment_uses_debians_python_packages() -> None:
    probe = (
        "import json, sys, _cffi_backend, psycopg, prometheus_client, alive_worker; "
        "print(json.dumps({'prefix': sys.prefix, 'modules': "
        "[m.__file__ for m in (_cffi_backend, psycopg, prometheus_client)], 'ours': alive_worker.__file__}))"
    )
    # -I: not the checkout's alive_worker/ from the working directory.
    result = run([str(ENVIRONMENT / "bin" / "python3"), "-I", "-c", probe])
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["prefix"] == str(ENVIRONMENT)
    assert all(path.startswith("/usr/lib/python3/dist-packages/") for path in found["modules"]), found
    assert found["ours"].startswith(f"{ENVIRONMENT}/lib/")
    assert not list(ENVIRONMENT.glob("lib/python3*/site-packages/pip")), "no pip in the package"


def test_preloaded_worker_writes_heartbeats_and_the_extension_reports_it(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(setup_sql=["CREATE EXTENSION alive_worker"])
    rows = cluster.wait_for_heartbeats(3)
    assert all(message.startswith(f"{MESSAGE} ") for _, message in rows)
    [(version,)] = cluster.sql("SELECT extversion FROM pg_extension WHERE extname = 'alive_worker'")
    assert version == SQL_VERSION
    [(state, ticks_ok, pid)] = cluster.sql(
        "SELECT state, ticks_ok, pid FROM alive_worker.workers WHERE database = 'postgres'"
    )
    assert state in ("sleeping", "ticking") and ticks_ok >= 3 and pid == cluster.worker_pid()


def test_alive_worker_on_path_is_pg_wrapper_running_the_majors_command(
    make_cluster: Callable[..., Cluster],
) -> None:
    command = shutil.which("alive-worker", path=SYSTEM_PATH)
    assert command == "/usr/bin/alive-worker"
    assert os.path.realpath(command) == "/usr/share/postgresql-common/pg_wrapper"
    assert owner(command) == "alive-worker-common"

    cluster = make_cluster(setup_sql=["CREATE EXTENSION alive_worker"])
    cluster.wait_for_heartbeats(2)
    result = run(["alive-worker", "status", "--dsn", dsn(cluster)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 1 ") and f"alive_worker {SQL_VERSION} on PostgreSQL" in result.stdout
    version = run(["alive-worker", "--version"])
    assert version.returncode == 0 and version.stdout.strip() == f"alive-worker {SQL_VERSION}.0", version


def test_the_runner_s_systemd_unit_is_installed_and_verified() -> None:
    unit = Path("/lib/systemd/system/alive-worker-run@.service")
    assert owner(unit) == "alive-worker-common"
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = run(["systemd-analyze", "verify", "alive-worker-run@test.service"])
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
