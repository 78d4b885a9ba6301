"""Emits each heartbeat into the WAL as a logical decoding message, for CDC consumers.

    ALTER SYSTEM SET alive_worker.hook = 'alive_worker.examples.cdc_marker:hook';

A consumer of a logical replication slot (Debezium, wal2json, pgoutput with
messages on) sees a message with prefix "alive_worker" in every tick's
transaction, even when no application table changes: it can tell that its
stream is alive, and how far behind it is, from the tick's number and time.
Transactional: the message is decoded only if the heartbeat commits.
"""

from __future__ import annotations

import json

from alive_worker import spi
from alive_worker.hooks import Tick

_emit: spi.Plan | None = None


def hook(tick: Tick) -> None:
    global _emit
    if _emit is None:
        _emit = spi.prepare(
            "SELECT pg_catalog.pg_logical_emit_message(true, 'alive_worker', $1::text)", ["text"], keep=True
        )
    _emit.execute(json.dumps({"tick": tick.number, "message": tick.message}))
