"""Records how much WAL each replication slot holds back, one row per slot and tick.

    CREATE TABLE public.replication_slot_sizes (
        at timestamptz NOT NULL DEFAULT now(),
        slot_name name NOT NULL,
        active boolean NOT NULL,
        retained_bytes numeric NOT NULL
    );
    ALTER SYSTEM SET alive_worker.hook = 'alive_worker.examples.replication_slots:hook';

A slot whose consumer is gone keeps WAL until the disk fills: the table shows
the growth long before that, on the server's own clock.  The table must be
owned by the worker's role or a superuser (see _trust.py).  The kept plan
follows the table's name: a table dropped and made again by another role
after the check would be written by it.  So the INSERT runs as the table's
owner, looked up at every execution (spi.TableAccess), and its triggers run
with their owner's rights, never the worker's.
"""

from __future__ import annotations

from alive_worker import spi
from alive_worker.examples._trust import table_owned_by_the_worker
from alive_worker.hooks import Tick

# Kept across ticks: prepared once, in the first tick.
_record: spi.Plan | None = None

_RECORD = """
INSERT INTO public.replication_slot_sizes (slot_name, active, retained_bytes)
SELECT slot_name, active, pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)
FROM pg_catalog.pg_replication_slots
WHERE restart_lsn IS NOT NULL
"""


def hook(tick: Tick) -> None:
    global _record
    if _record is None:
        table_owned_by_the_worker("public.replication_slot_sizes")
        _record = spi.prepare(
            _RECORD, keep=True, as_owner_of=spi.TableAccess.for_insert("public", "replication_slot_sizes")
        )
    _record.execute()
