"""Replication: on a primary its standbys and inactive slots; on a standby the lag, by alive_worker.lag()."""

from __future__ import annotations

import psycopg
from psycopg import sql

from alive_worker.cli._common import Status, seconds_text, shown_sql, version_key
from alive_worker.cli.doctor._doctor import Doctor

STANDBYS = (
    "SELECT application_name, state, replay_lag FROM pg_catalog.pg_stat_replication ORDER BY application_name"
)
# Inactive slots hold WAL back until their client returns.
INACTIVE_SLOTS = """
SELECT slot_name, slot_type, pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn) AS retained
FROM pg_catalog.pg_replication_slots WHERE NOT active AND restart_lsn IS NOT NULL ORDER BY slot_name
"""


def check_replication(doctor: Doctor) -> None:
    if doctor.server["in_recovery"]:
        check_standby(doctor)
        return
    standbys = doctor.conn.execute(STANDBYS).fetchall()
    if standbys:
        listed = ", ".join(
            f"{s['application_name']} {s['state']} (replay lag {seconds_text(s['replay_lag'].total_seconds()) if s['replay_lag'] else '-'})"
            for s in standbys
        )
        doctor.add("replication", Status.OK, f"{len(standbys)} standby(s): {listed}")
    else:
        doctor.add("replication", Status.OK, "no standby streams from this server")
    for slot in doctor.conn.execute(INACTIVE_SLOTS).fetchall():
        retained = int(slot["retained"] or 0)
        doctor.add(
            f"slot {slot['slot_name']}",
            Status.WARNING,
            f"{slot['slot_type']} slot {slot['slot_name']} is inactive and holds {retained // 1024} kB of WAL",
            "Reconnect its client, or "
            + shown_sql(doctor.conn, "SELECT pg_drop_replication_slot({});", sql.Literal(slot["slot_name"])),
        )


def check_standby(doctor: Doctor) -> None:
    if doctor.extension is None or version_key(doctor.extension) < (1, 1):
        doctor.add("replication", Status.UNKNOWN, "lag() needs the extension at version 1.1")
        return
    try:
        reading = doctor.one(sql.SQL("SELECT * FROM {}()").format(doctor.name("lag")))
    except psycopg.Error as error:
        doctor.add("replication", Status.WARNING, f"cannot measure the lag: {error.diag.message_primary}")
        return
    if reading["lag"] is None:
        doctor.add("replication", Status.WARNING, f"no heartbeat in {reading['source_table']} yet")
        return
    text = (
        f"lag {seconds_text(reading['lag'].total_seconds())} behind system {reading['system_identifier']}"
        f" via {reading['upstream'] or 'no WAL receiver'}"
    )
    if reading["replay_paused"]:
        doctor.add(
            "replication", Status.WARNING, f"{text}; replay is paused", "SELECT pg_wal_replay_resume();"
        )
    elif not reading["upstream"]:
        doctor.add("replication", Status.WARNING, f"{text}; not streaming", "Check primary_conninfo.")
    else:
        doctor.add("replication", Status.OK, text)
