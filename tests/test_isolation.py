"""libpython is mapped in the worker only: not in the postmaster nor in client backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PKGLIB_DIR, UNHURRIED, Cluster, write_hook


def maps_libpython(pid: int) -> bool:
    return "libpython" in Path(f"/proc/{pid}/maps").read_text()


def test_only_the_worker_maps_libpython(cluster: Cluster) -> None:
    worker = cluster.wait_for_worker()
    assert maps_libpython(worker)
    assert not maps_libpython(cluster.node.pid), "the postmaster must not load libpython"
    with cluster.connect() as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        conn.execute("LOAD 'alive_worker'")
        assert not maps_libpython(backend), "a client backend must not load libpython"
    others = [p.pid for p in cluster.node.auxiliary_processes]
    assert others and not any(maps_libpython(pid) for pid in others)


def test_worker_python_ignores_the_servers_python_environment(
    make_cluster: Callable[..., Cluster], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inherited by pg_ctl and so by the postmaster and the worker.
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    monkeypatch.setenv("PYTHONDEVMODE", "1")
    monkeypatch.setenv("PYTHONPATH", "/nonexistent")
    hook = write_hook(
        tmp_path,
        """
import faulthandler, sys
from alive_worker import spi

def hook(tick):
    facts = [faulthandler.is_enabled(), sys.flags.dev_mode, "/nonexistent" in sys.path, sys.prefix]
    spi.execute("INSERT INTO public.facts VALUES ($1)", repr(facts))
""",
    )
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED}, setup_sql=["CREATE TABLE facts (f text)"])
    cluster.wait_for_heartbeats(1)
    expected_prefix = f"{PKGLIB_DIR}/alive_worker"
    assert cluster.sql("SELECT f FROM facts LIMIT 1") == [(repr([False, False, False, expected_prefix]),)]
