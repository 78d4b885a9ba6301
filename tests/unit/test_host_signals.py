"""The hook host's start undoes every ignored signal exec kept, whoever ignored it."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_PARENT = Path(__file__).resolve().parents[2]

# Ignores every signal it can, glibc's hidden 32 and 33 through the system call
# itself (as a service manager or a CI runner above the postmaster may), then
# runs the host's start and prints what the kernel still lists as ignored.
IGNORE_ALL_THEN_START = """
import ctypes, os, signal, sys
sys.path.insert(0, {parent!r})
from alive_worker import _host
libc = ctypes.CDLL(None, use_errno=True)
ignore = (ctypes.c_ulong * 4)(1, 0, 0, 0)  # SIG_IGN
for number in range(1, 65):
    if number not in (signal.SIGKILL, signal.SIGSTOP):
        libc.syscall(ctypes.c_long(_host.RT_SIGACTION[{machine!r}]), ctypes.c_long(number), ignore, None,
                     ctypes.c_ulong(8))
assert 32 in _host.ignored_signals() and signal.SIGTERM in _host.ignored_signals()
os.execv(sys.executable, [sys.executable, "-c",
    "import sys; sys.path.insert(0, {parent!r}); from alive_worker import _host; "
    "_host.default_signal_dispositions(); print(sorted(_host.ignored_signals()))"])
"""


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "aarch64"),
    reason="rt_sigaction's number is known for x86_64 and aarch64",
)
def test_only_what_python_ignores_stays_ignored() -> None:
    script = IGNORE_ALL_THEN_START.format(parent=str(PACKAGE_PARENT), machine=platform.machine())
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    # SIGPIPE and SIGXFSZ: what Python itself ignores at start.
    assert result.stdout.strip() == "[13, 25]", result.stdout
