"""What the suite needs to run beside itself (pytest-xdist's workers, and other runs on the host).

Ports.  Every server a test starts (PostgreSQL through testgres, etcd,
Patroni, Prometheus, the exporter) listens on a port that PORTS reserved:
a lock directory per port, made with mkdir (atomic across processes),
where testgres itself keeps its reservations.  So no two processes of this
host that reserve through it (our xdist workers, another worktree's run,
testgres's own port manager) are given the same port, even for a server
that is stopped for a while (the new cluster of a pg_upgrade).  Ports come
from outside the kernel's ephemeral range, which a client's connect() takes
its local ports from: a port inside it could be taken by some connection
between its reservation and the server's bind.

Tests that must run alone.  A test marked ``alone`` runs with no other test
of the run beside it (one that loads the machine, or measures timing that
a neighbour's load would distort).  Every test takes a shared lock around
its set-up, call and teardown; an ``alone`` test takes it exclusively.  A
turnstile before it gives the exclusive taker its turn: once it waits, no
new test starts until it is done.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import testgres
import testgres.consts

# Below this, the registered ports of services a host may start at any time
# (PostgreSQL's 5432, etcd's 2379, Prometheus's 9090).
FIRST_PORT = 10_000
TRIES = 1_000


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def nothing_listens_on(port: int) -> bool:
    """Whether port can be bound on every address, IPv4 and IPv6 (where there is IPv6)."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host
        with probe:
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


class HostPorts(testgres.PortManager):  # type: ignore[misc]
    """Ports reserved host-wide until released, or until this process exits."""

    def __init__(self) -> None:
        super().__init__()
        low, high = ephemeral_range()
        self.candidates = [port for port in range(FIRST_PORT, 65_536) if not low <= port <= high]
        self.lock_dir = Path(tempfile.gettempdir()) / str(testgres.consts.TMP_TESTGRES_PORTS)
        self.held: set[int] = set()
        self.guard = threading.Lock()

    def lock_path(self, port: int) -> Path:
        return self.lock_dir / f"{port}.lock"

    def reserve_port(self) -> int:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        for port in random.sample(self.candidates, min(TRIES, len(self.candidates))):
            try:
                self.lock_path(port).mkdir()
            except FileExistsError:
                continue  # reserved by another process (or left by one that was killed)
            if nothing_listens_on(port):
                with self.guard:
                    self.held.add(port)
                return port
            self.lock_path(port).rmdir()
        raise RuntimeError(
            f"no free port among {TRIES} tried from {FIRST_PORT} up (locks in {self.lock_dir})"
        )

    def release_port(self, number: int) -> None:
        with self.guard:
            self.held.remove(number)
        self.lock_path(number).rmdir()

    def release_all(self) -> None:
        for port in list(self.held):
            with contextlib.suppress(OSError, KeyError):
                self.release_port(port)


PORTS = HostPorts()
atexit.register(PORTS.release_all)


def postgres_node(base_dir: Path, bin_dir: str) -> testgres.PostgresNode:
    """A testgres node (not yet initialised) on a port of PORTS; its standbys get theirs from PORTS too."""
    return testgres.PostgresNode(
        base_dir=str(base_dir),
        bin_dir=bin_dir,
        os_ops=testgres.LocalOperations.get_single_instance(),
        port_manager=PORTS,
    )


def initialised(node: testgres.PostgresNode) -> testgres.PostgresNode:
    """node.init(): a copy of one data directory initdb made for the run and its server tree.

    testgres runs initdb for every node (its cache is not used by
    PostgresNode.init): 1.3 to 1.9 s of CPU each on a 2-core machine, for
    each of the suite's four hundred clusters.  A copy takes a tenth of it.
    The copies share a system identifier, as a standby shares its primary's;
    no test compares two clusters' identifiers.
    """
    lock_dir = Path(os.environ[LOCK_DIR_VARIABLE])
    template = lock_dir / f"initdb-{hashlib.sha256(node.bin_dir.encode()).hexdigest()[:16]}"
    with open(lock_dir / "initdb.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            made = Path(tempfile.mkdtemp(prefix="initdb-", dir=lock_dir)) / "data"
            subprocess.run(
                [str(Path(node.bin_dir) / "initdb"), "-N", "-D", str(made)],
                check=True,
                capture_output=True,
            )
            made.rename(template)
    shutil.copytree(template, node.data_dir, symlinks=True)
    node.default_conf()
    return node


# ---- tests that run alone ----

# The directory of this run's locks, made by the process that starts the run
# and inherited by xdist's workers through the environment.
LOCK_DIR_VARIABLE = "ALIVE_WORKER_TEST_LOCKS"


def make_lock_dir() -> Path | None:
    """Makes the run's lock directory, unless this process is a worker of a run that has one."""
    if os.environ.get(LOCK_DIR_VARIABLE):
        return None
    made = Path(tempfile.mkdtemp(prefix="alive_worker-test-locks-"))
    os.environ[LOCK_DIR_VARIABLE] = str(made)
    return made


@contextlib.contextmanager
def run_lock(alone: bool) -> Iterator[None]:
    """The run's lock: shared by every test, exclusive for a test that runs alone."""
    lock_dir = Path(os.environ[LOCK_DIR_VARIABLE])
    with open(lock_dir / "turnstile", "a") as turnstile, open(lock_dir / "tests", "a") as tests:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(tests, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield


# ---- how tests are handed out ----

# The files whose units take longest, as measured (--durations=0: their
# tests' set-up, call and teardown, with four workers on two cores): a file's
# one long test, or a whole file whose tests share a cluster (one unit, see
# group_by_shared_cluster), first; then the files of many tests of ten
# seconds or so.  xdist (--dist loadgroup, --no-loadscope-reorder) hands out
# its units in collection order: a long one that started last would keep the
# run going alone.
SLOWEST_FILES = (
    "test_patroni.py",  # one test, 55 s
    "test_trust.py",  # one unit, 85 s
    "test_hooks.py",  # 172 s, one test of 45 s
    "test_report.py",  # one unit, 40 s
    "test_load.py",  # one test, 31 s
    "test_clock_skew.py",  # one unit, 23 s
    "test_runner_patroni.py",  # one test, 21 s
    "test_client_refusals.py",  # 385 s, 37 tests of 9 to 13 s
    "test_retention.py",
    "test_prometheus.py",
    "test_logical.py",
    "test_connection_settings.py",
    "test_ledger_events.py",
    "test_client_probe.py",
    "test_cli.py",
    "test_hook_process_properties.py",
)


def slowest_first(items: list[pytest.Item]) -> None:
    """Sorts the collected tests so that SLOWEST_FILES come first, in that order; the rest keep theirs."""
    rank = {name: index for index, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FILES)))


def shares_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in ("module", "package") for defs in info.name2fixturedefs.values())


def group_by_shared_cluster(items: list[pytest.Item]) -> None:
    """The tests of a file that share a module-scoped fixture (a cluster made
    once) go to one worker, as one unit; every other test is a unit of its
    own.  Whole files as units (--dist loadfile) left a file of forty
    situations, each with a cluster of its own, to one worker for six minutes
    while the others had finished."""
    for item in items:
        if shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.path.name))
