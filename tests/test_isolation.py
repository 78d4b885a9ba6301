"""libpython is mapped in the worker only: not in the postmaster nor in client backends."""

from __future__ import annotations

from pathlib import Path

from conftest import Cluster


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
