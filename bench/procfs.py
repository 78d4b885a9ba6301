"""Processes, from outside: CPU from /proc/PID/schedstat, memory from /proc/PID/smaps_rollup, exits by pidfd."""

from __future__ import annotations

import os
import re
import select
from pathlib import Path


def cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def pss_kb(pid: int) -> int:
    match = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")
    return int(match.group(1))


def private_mappings_kb(pid: int, counters: tuple[str, ...]) -> int:
    """The sum of these smaps counters over the process's private mappings, in kB."""
    total = 0
    private = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            private = fields[1].endswith("p")
        elif private and fields[0] in counters:
            total += int(fields[1])
    return total


def private_pss_kb(pid: int) -> int:
    """PSS of the process's private mappings: its heap, stack and libraries, not shared memory.

    A process's PSS also counts its share of every shared-buffer page it has
    touched, which grows with the table and says nothing of the process itself.
    """
    return private_mappings_kb(pid, ("Pss:",))


def uss_kb(pid: int) -> int:
    """Memory only this process uses, in its private mappings (Private_Clean + Private_Dirty).

    Shared memory is left out: its pages count as private to whichever
    process alone touched them, which depends on what else runs.
    """
    return private_mappings_kb(pid, ("Private_Clean:", "Private_Dirty:"))


def wait_for_exit(pid: int, timeout: float) -> None:
    """Returns when the process has exited (a pidfd turns readable)."""
    fd = os.pidfd_open(pid)
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise RuntimeError(f"process {pid} still running after {timeout:.0f} s")
    finally:
        os.close(fd)
