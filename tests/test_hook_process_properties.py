"""The class, not the case: every process-wide property a hook can change stays in the hook host.

issue 20's table was a list of cases; this is the class they belong to.  Each
entry of PROPERTIES is a few lines of hook code that changes one property of
the process it runs in (its directory, umask, descriptors, signal dispositions
and mask, timers, resource limits, environment, process group and session,
children that outlive it, how it exits, signals, its stack, its memory).  One
test per entry checks the same things, so that a new property is one line:

- the worker's and the postmaster's own properties, read from /proc, are
  what they were before the hook acted;
- the cluster works: WAL segments, commits, a checkpoint, the other tables;
  no reset or PANIC in the log; the heartbeats on schedule;
- every process the hook started (the host itself, its children, daemons in
  a session of their own) has stopped once the worker has ended the host,
  and writes nothing more;
- pg_ctl stop -m fast within 5 s.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Cluster, wait_for, write_hook, written
from test_hook_host import NEVER_IN_THE_LOG, assert_the_server_writes_on

INTERVAL_S = 0.2

# A daemon: forked, in a new session (so a kill of the host's process group
# misses it), forked again so that its parent is gone, deaf to SIGTERM and
# SIGHUP; it writes to a file of its own until something kills it.
DAEMON = """
    pid = os.fork()
    if pid == 0:
        {detach}
        if os.fork() != 0:
            os._exit(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        record(os.getpid())
        with open(OUT / "daemon.out", "a") as out:
            while True:
                out.write("x")
                out.flush()
                time.sleep(0.02)
    os.waitpid(pid, 0)
"""

PROPERTIES: dict[str, str] = {
    "working directory": "os.chdir('/tmp')",
    "umask": "os.umask(0o777)",
    "fds 0-2 closed": "os.close(0)\n    os.close(1)\n    os.close(2)",
    "fds 0-2 duped onto a file": (
        "junk = os.open(str(OUT / 'junk'), os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "    for n in range(3):\n"
        "        os.dup2(junk, n)\n"
        "    print('x' * 100000)\n"
        "    os.write(2, b'y' * 100000)"
    ),
    "every fd closed": "os.closerange(0, 65536)",
    "every signal ignored": (
        "for number in range(1, signal.NSIG):\n"
        "        if number not in (signal.SIGKILL, signal.SIGSTOP):\n"
        "            try:\n"
        "                signal.signal(number, signal.SIG_IGN)\n"
        "            except (OSError, ValueError):\n"
        "                pass\n"
        "    time.sleep(60)"
    ),
    "every signal blocked": "signal.pthread_sigmask(signal.SIG_BLOCK, range(1, signal.NSIG))\n    time.sleep(60)",
    "ITIMER_REAL": "signal.setitimer(signal.ITIMER_REAL, .01, .01)",
    "ITIMER_VIRTUAL": "signal.setitimer(signal.ITIMER_VIRTUAL, .01, .01)\n    while True:\n        pass",
    "ITIMER_PROF": "signal.setitimer(signal.ITIMER_PROF, .01, .01)\n    while True:\n        pass",
    "RLIMIT_NOFILE": "resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))",
    "RLIMIT_CPU": "resource.setrlimit(resource.RLIMIT_CPU, (1, 1))\n    while True:\n        pass",
    "RLIMIT_FSIZE": ("resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))\n    (OUT / 'big').write_text('x')"),
    "environment": "os.environ.clear()\n    os.environ['PGDATA'] = '/nonexistent'\n    os.putenv('LANG', 'xx')",
    "process group": "os.setpgid(0, 0) if os.getpid() != os.getsid(0) else None\n"
    + DAEMON.format(detach="os.setpgid(0, 0)"),
    "daemon in a session of its own": DAEMON.format(detach="os.setsid()"),
    "daemon in the host's session": DAEMON.format(detach="pass"),
    "fork, the child returns": "if os.fork() == 0:\n        record(os.getpid())",
    "exit code 0": "os._exit(0)",
    "exit code 3": "os._exit(3)",
    "sys.exit": "sys.exit(0)",
    "SIGSEGV": "os.kill(os.getpid(), signal.SIGSEGV)",
    "SIGABRT": "os.abort()",
    "SIGKILL": "os.kill(os.getpid(), signal.SIGKILL)",
    "SIGSTOP": "os.kill(os.getpid(), signal.SIGSTOP)",
    "C stack overflow": (
        "sys.setrecursionlimit(10**6)\n"
        "    threading.stack_size(64 * 1024)\n"
        "    class Deep:\n"
        "        def __getattr__(self, name):\n"
        "            return getattr(self, name)\n"
        "    thread = threading.Thread(target=lambda: Deep().x)\n"
        "    thread.start()\n"
        "    thread.join()"
    ),
    "memory": "KEPT.append(bytearray(600 * 1024 * 1024))",
}

HOOK = """
import os, resource, signal, sys, threading, time
from pathlib import Path

OUT = Path(__file__).parent
KEPT = []

def record(pid):
    with open(OUT / "pids", "a") as pids:
        pids.write(f"{{pid}}\\n")

def hook(tick):
    if (OUT / "end").exists():
        os._exit(7)
    if tick.number < 3 or (OUT / "acted").exists():
        return
    (OUT / "acted").write_text(str(tick.number))
    record(os.getpid())
{act}
"""


def running(pid: int) -> bool:
    """Whether the process exists and is no zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def process_properties(pid: int) -> dict[str, Any]:
    """What a hook changed in issue 20's table, for one of the server's processes."""
    proc = Path(f"/proc/{pid}")
    status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
    stat_fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    descriptors = {}
    for entry in (proc / "fd").iterdir():
        try:
            descriptors[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:
            continue
    return {
        "cwd": os.readlink(proc / "cwd"),
        "umask": status["Umask"].strip(),
        "signals blocked": status["SigBlk"].strip(),
        "signals ignored": status["SigIgn"].strip(),
        "signals caught": status["SigCgt"].strip(),
        "limits": (proc / "limits").read_text(),
        "environment": (proc / "environ").read_bytes(),
        "process group": stat_fields[2],
        "session": stat_fields[3],
        "fds 0-2": [descriptors.get(n) for n in range(3)],
        # The postmaster's pipe and the like: opened once, never closed.
        "pipes": sorted(target for target in descriptors.values() if target.startswith("pipe:")),
    }


def state_file_modes(cluster: Cluster) -> dict[str, int]:
    return {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in Path(cluster.node.data_dir).glob("alive_worker.*.state")
    }


def recorded_pids(directory: Path) -> list[int]:
    pids = directory / "pids"
    return [int(line) for line in pids.read_text().split()] if pids.exists() else []


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_a_process_wide_property_a_hook_changes_stays_in_the_host(
    make_cluster: Callable[..., Cluster], tmp_path: Path, name: str
) -> None:
    hook = write_hook(tmp_path, HOOK.format(act="    " + PROPERTIES[name]))
    os.chmod(tmp_path, 0o700)
    cluster = make_cluster(
        settings={"hook": hook, "interval": "200ms", "tick_timeout": "1s", "hook_memory_limit": "256MB"},
        setup_sql=["CREATE TABLE other (n int)", "INSERT INTO other VALUES (1)"],
    )
    worker = cluster.wait_for_worker()
    postmaster = cluster.node.pid
    cluster.wait_for_heartbeats(2)
    before = {pid: process_properties(pid) for pid in (worker, postmaster)}
    modes = state_file_modes(cluster)
    wait_for(lambda: (tmp_path / "acted").exists(), "the hook to act", timeout=20)
    time.sleep(5 * INTERVAL_S)

    # The server's processes are as they were (a signal handler may block a
    # signal for a moment: what must hold is that they come back).
    def now() -> dict[int, dict[str, Any]]:
        return {pid: process_properties(pid) for pid in before}

    try:
        wait_for(lambda: now() == before, "the worker's and the postmaster's properties", timeout=3)
    except AssertionError:
        assert now() == before  # which property, in pytest's words
        raise
    assert state_file_modes(cluster) == modes
    # WAL segments, commits, new connections, checkpoints: what the table broke; heartbeats on schedule.
    assert_the_server_writes_on(cluster, fresh_heartbeats=3)
    assert cluster.worker_pid() == worker

    # The worker ends the host (the hook exits at the next tick, in whichever
    # host runs then): nothing the hook started runs on.
    (tmp_path / "end").touch()
    cluster.wait_for_log(r"the hook host exited with code 7", timeout=20)
    started_by_the_hook = recorded_pids(tmp_path)
    assert started_by_the_hook, "the hook recorded no process"
    wait_for(
        lambda: not any(running(pid) for pid in started_by_the_hook),
        f"the processes the hook started ({started_by_the_hook}) to stop",
        timeout=2,
    )
    daemon_out = tmp_path / "daemon.out"
    if daemon_out.exists():
        size = daemon_out.stat().st_size
        time.sleep(0.3)
        assert daemon_out.stat().st_size == size, "a daemon the hook started still writes"
    assert cluster.worker_pid() == worker

    log = cluster.log()
    for bad in NEVER_IN_THE_LOG:
        assert bad not in log, bad
    started = time.monotonic()
    stopper = threading.Thread(target=lambda: cluster.node.stop(["-m", "fast"]))
    stopper.start()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert time.monotonic() - started < 5


def test_a_daemon_the_hook_started_ends_with_the_worker(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """pg_ctl stop ends the worker between ticks: the host's daemons go with it."""
    hook = write_hook(tmp_path, HOOK.format(act=DAEMON.format(detach="os.setsid()")))
    os.chmod(tmp_path, 0o700)
    cluster = make_cluster(settings={"hook": hook, "interval": "200ms"})
    cluster.wait_for_worker()
    wait_for(lambda: len(recorded_pids(tmp_path)) == 2, "the daemon to start", timeout=20)
    pids = recorded_pids(tmp_path)
    assert all(running(pid) for pid in pids)
    cluster.node.stop(["-m", "fast"])
    wait_for(
        lambda: not any(running(pid) for pid in pids), f"the host and its daemon ({pids}) to stop", timeout=2
    )


DESCRIPTORS_HOOK = """
import os
from pathlib import Path

OUT = Path(__file__).parent

def descriptors():
    directory = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    found = {}
    for name in os.listdir(directory):
        if int(name) != directory:
            try:
                found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
            except FileNotFoundError:
                pass
    os.close(directory)
    return found

def signals():
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    return {name: int(status[name], 16) for name in ("SigIgn", "SigBlk")}

def hook(tick):
    if (OUT / "host").exists():
        return
    (OUT / "signals").write_text(repr(signals()))
    pid = os.fork()
    if pid == 0:
        (OUT / "child").write_text(repr(descriptors()))
        os._exit(0)
    os.waitpid(pid, 0)
    (OUT / "host").write_text(repr(descriptors()))
"""


def test_the_host_inherits_no_descriptor_or_signal_disposition_of_the_server(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """Only /dev/null on 0-2 and its socket to the worker: no data file, WAL, pipe or socket of the server;
    no signal blocked, none ignored but what Python itself ignores (SIGPIPE, SIGXFSZ)."""
    hook = write_hook(tmp_path, DESCRIPTORS_HOOK)
    os.chmod(tmp_path, 0o700)
    cluster = make_cluster(settings={"hook": hook})
    worker = cluster.wait_for_worker()
    wait_for(lambda: written(tmp_path / "host"), "the hook to list its descriptors", timeout=20)
    servers = {
        os.readlink(entry)
        for pid in (worker, cluster.node.pid)
        for entry in Path(f"/proc/{pid}/fd").iterdir()
        if entry.is_symlink()
    } - {"/dev/null"}
    for who in ("host", "child"):
        found: dict[int, str] = eval((tmp_path / who).read_text())
        assert [found.get(n) for n in range(3)] == ["/dev/null"] * 3, (who, found)
        others = {n: target for n, target in found.items() if n > 2}
        # The socket to the worker, in the host; a forked child closes its copy.
        assert len(others) == (who == "host") and all(t.startswith("socket:") for t in others.values()), (
            who,
            found,
        )
        assert not servers & set(found.values()), (who, found)
    ignored = {
        number
        for number in range(1, 65)
        if eval((tmp_path / "signals").read_text())["SigIgn"] >> (number - 1) & 1
    }
    assert ignored == {signal.SIGPIPE, signal.SIGXFSZ}, ignored
    assert eval((tmp_path / "signals").read_text())["SigBlk"] == 0
