"""PL/Python in the worker's process: one interpreter, the GIL held as PL/Python expects, no abort."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PG_CONFIG, UNHURRIED, Cluster, wait_for, write_hook

SHARE_DIR = subprocess.check_output([PG_CONFIG, "--sharedir"], text=True).strip()
pytestmark = pytest.mark.skipif(
    not Path(SHARE_DIR, "extension", "plpython3u.control").exists(),
    reason=f"plpython3u is not installed in {SHARE_DIR} (Debian: postgresql-plpython3-15, which "
    "scripts/setup-host installs; the PyPI server trees of 16 and 18 have none)",
)

# The log table made in advance, so that a plpython3u trigger can be put on it.
SETUP = [
    "CREATE EXTENSION plpython3u",
    "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())",
    "CREATE TABLE public.notes (n int, one_interpreter boolean)",
    "CREATE TABLE public.seen (what text)",
    """CREATE FUNCTION public.remember() RETURNS trigger LANGUAGE plpython3u AS $$
plpy.execute("INSERT INTO public.seen VALUES ('%s %s')" % (TD["table_name"], TD["new"].get("n") or TD["new"]["pk"]))
return None
$$""",
    "CREATE TRIGGER remember AFTER INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.remember()",
    "CREATE TRIGGER remember AFTER INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.remember()",
    # Sees the worker's own modules: PL/Python runs in the worker's interpreter.
    """CREATE FUNCTION public.shares_the_interpreter() RETURNS boolean LANGUAGE plpython3u AS $$
import sys
return "alive_worker.heartbeat" in sys.modules
$$""",
    """CREATE FUNCTION public.add_one(n int) RETURNS int LANGUAGE plpython3u AS $$
return n + 1
$$""",
]


def test_a_hook_calls_plpython_and_writes_a_table_with_a_plpython_trigger(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

def hook(tick):
    [(n,)] = spi.execute("SELECT public.add_one($1::int)", str(tick.number))
    [(shared,)] = spi.execute("SELECT public.shares_the_interpreter()")
    spi.execute("INSERT INTO public.notes VALUES ($1::int, $2::boolean)", n, shared)
""",
    )
    # Unhurried: the first tick's hook waits for the host's start, which may
    # outlast a 100 ms tick timeout on a busy machine.
    cluster = make_cluster(settings={"hook": hook, **UNHURRIED}, setup_sql=SETUP)
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(5)
    wait_for(lambda: cluster.sql("SELECT count(*) FROM public.notes")[0][0] >= 5, "five notes")
    notes = cluster.sql("SELECT n, one_interpreter FROM public.notes ORDER BY n LIMIT 3")
    assert notes == [(2, True), (3, True), (4, True)]
    seen = {what for (what,) in cluster.sql("SELECT what FROM public.seen")}
    # The trigger on the log table (the heartbeat's INSERT) and on the hook's table.
    assert {"log_table 1", "log_table 2", "notes 2", "notes 3"} <= seen
    assert cluster.worker_pid() == pid
    log = cluster.log()
    assert "terminated by signal" not in log
    assert "WARNING:  alive_worker hook failed" not in log
