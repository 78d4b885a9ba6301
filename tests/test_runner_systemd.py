"""The systemd unit of alive-worker run (debian/): a unit systemd accepts, running the command as shipped."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN_DIR

UNIT = Path(__file__).parent.parent / "debian" / "alive-worker-common.alive-worker-run@.service"


def test_the_runner_s_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        print("skipped: systemd-analyze is not installed (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text()
    command = re.search(r"^ExecStart=(\S+) run$", text, re.M)
    assert command and command.group(1) == "/usr/bin/alive-worker", (
        "the unit runs pg_wrapper's alive-worker run"
    )
    # verify checks that the program exists: here, the command of the tree under test
    # (the package's /usr/bin/alive-worker is checked in test_debian_package.py).
    installed = Path(BIN_DIR) / "alive-worker"
    (tmp_path / "alive-worker-run@.service").write_text(
        text.replace(command.group(0), f"ExecStart={installed} run")
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "alive-worker-run@orders.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on a value it ignores, with a warning: both must be clean.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
    # One instance per server, its settings passed as a credential, reloaded on SIGHUP.
    assert "LoadCredential=config:/etc/alive-worker/run/%i.conf" in text
    assert "Environment=ALIVE_WORKER_CONFIG=%d/config" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
