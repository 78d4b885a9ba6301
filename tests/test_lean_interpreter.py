"""The worker's interpreter imports what the heartbeat needs, and what errors, hooks and logging need when they come.

Seen from inside the worker's own interpreter: PL/Python runs there
(alive_worker/_plpython.py), so a plpython3u trigger on the log table reads
the worker's sys.modules at every tick.  Issue 25: logging (with
threading), traceback (with tokenize), typing and re, and dataclasses
(with inspect) cost each worker about 3 MB at start.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PG_CONFIG, Cluster, wait_for

SHARE_DIR = subprocess.check_output([PG_CONFIG, "--sharedir"], text=True).strip()
pytestmark = pytest.mark.skipif(
    not Path(SHARE_DIR, "extension", "plpython3u.control").exists(),
    reason=f"plpython3u is not installed in {SHARE_DIR}",
)

# What only errors, hooks, reloads, the ledger or a log line need.
LATE_MODULES = ("logging", "threading", "traceback", "tokenize", "typing", "re", "dataclasses", "inspect")

LOG_TABLE = "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())"
# A trigger on the log table, in plpython3u: it runs in the worker's interpreter and notes
# which of LATE_MODULES it has imported, at every heartbeat.
NOTE_IMPORTS = [
    "CREATE TABLE public.imported (pk int, modules text)",
    f"""CREATE FUNCTION public.note_imports() RETURNS trigger LANGUAGE plpython3u AS $$
import sys
late = [name for name in {LATE_MODULES!r} if name in sys.modules]
plan = plpy.prepare("INSERT INTO public.imported VALUES ($1, $2)", ["int", "text"])
plpy.execute(plan, [TD["new"]["pk"], " ".join(late)])
return None
$$""",
]
NOTE_ON_LOG_TABLE = "CREATE TRIGGER note_imports AFTER INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.note_imports()"
SETUP = ["CREATE EXTENSION plpython3u", LOG_TABLE, *NOTE_IMPORTS, NOTE_ON_LOG_TABLE]


def imported_at_tick(cluster: Cluster, after_pk: int) -> str:
    rows = wait_for(
        lambda: (
            cluster.sql("SELECT modules FROM public.imported WHERE pk > %s ORDER BY pk LIMIT 1", [after_pk])
            or None
        ),
        f"a heartbeat after {after_pk} seen by the trigger",
    )
    return str(rows[0][0])


def test_a_worker_whose_ticks_go_well_has_imported_no_logging_traceback_typing_or_re(
    make_cluster: Callable[..., Cluster],
) -> None:
    # The tests' servers log DEBUG1, which the worker's logging would write: a server's default here.
    cluster = make_cluster(setup_sql=SETUP, conf={"log_min_messages": "warning"})
    cluster.wait_for_heartbeats(3)
    assert imported_at_tick(cluster, 2) == ""


def test_a_worker_that_writes_log_records_imports_no_logging(make_cluster: Callable[..., Cluster]) -> None:
    """Its records go to the server log without Python's logging: a worker that created its table,
    and said so, kept logging's 2 MB before (issue 25's memory per database)."""
    cluster = make_cluster(setup_sql=["CREATE EXTENSION plpython3u", *NOTE_IMPORTS])
    cluster.wait_for_log(r"LOG:  alive_worker created log table public.log_table")
    # The line is logged before the table's transaction commits; a heartbeat is after it.
    cluster.wait_for_heartbeats(1)
    cluster.sql(NOTE_ON_LOG_TABLE)
    count = len(cluster.heartbeats())
    assert imported_at_tick(cluster, count) == ""
