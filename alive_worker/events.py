"""The ledger's events (issue 23): what explains a gap, written beside the heartbeat that ends it.

A heartbeat cannot be written while the server is down or a tick fails, so
the worker records a gap when heartbeats resume: at its first heartbeat, how
the previous run ended and how this one began (alive_worker.ledger.start_events,
from what src/server_start.c kept), and later, a heartbeat that comes more
than GAP_INTERVALS intervals after the previous one, with the failures in
between.  The events go into the extension's table alive_worker.events in the
tick's own transaction: they commit exactly when the heartbeat that closes
the window does, and are replicated with it.  In a database without the
extension (1.3 or later) there is no ledger, and the heartbeat goes on; a
failing write of events is logged once and never fails the heartbeat.

Events are kept longer than heartbeats (EVENTS_KEPT_SECONDS, or the
heartbeats' retention if longer), so that the windows they record outlive
the heartbeats: alive-worker report reads both.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from alive_worker import pglog, settings, spi
from alive_worker._native import ffi
from alive_worker.heartbeat_table import HeartbeatTable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from alive_worker import ledger

log = pglog.getLogger(__name__)

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A heartbeat later than this many intervals after the previous one ends a gap the ledger keeps.
GAP_INTERVALS = 2
EVENTS_KEPT_SECONDS = 400 * 86400
PRUNE_EVERY_SECONDS = 3600.0
# How many of the newest rows the first heartbeat reads to find the last one before the gap.
LAST_ROWS_READ = 100
# Without a ledger (no extension, no grant yet), how often to look again.  A ledger that
# could not be prepared (its table locked, the tick timeout: that tick fails) is tried again
# sooner, FIRST_RETRY_SECONDS after the first failure and twice as long after each next one.
LOOK_AGAIN_SECONDS = 60.0
FIRST_RETRY_SECONDS = 1.0

# The extension's own table, found through pg_depend: a look-alike in a
# schema of the same name that is not the extension's is never written.
_EVENTS_TABLE = """
SELECT n.nspname
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_depend d
  ON d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = e.oid
 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'e'
JOIN pg_catalog.pg_class c ON c.oid = d.objid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.oid = e.extnamespace
WHERE e.extname = 'alive_worker' AND c.relname = 'events' AND c.relkind = 'r'
"""


def _moment(seconds: float) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _from_epoch_text(value: object) -> datetime | None:
    """A numeric epoch as the server prints it, to the microsecond; None for NULL or a time Python
    cannot hold (a row dated BC by a role with INSERT: no heartbeat, and never a failed tick)."""
    if value is None:
        return None
    text = str(value)
    sign = -1 if text.startswith("-") else 1
    seconds, _, fraction = text.lstrip("-").partition(".")
    try:
        micro = int(seconds) * 1_000_000 + int(fraction.ljust(6, "0")[:6])
        return UNIX_EPOCH + timedelta(microseconds=sign * micro)
    except (ValueError, OverflowError):
        return None


def _text(pointer: object) -> str:
    return "" if pointer == ffi.NULL else str(ffi.string(pointer).decode(errors="replace"))


def start_facts() -> ledger.StartFacts:
    """What the shim kept about this start (src/server_start.c), handed over with the tick."""
    from alive_worker import ledger

    facts = spi.given_tick().start
    started = _moment(facts.server_started_at)
    assert started is not None
    return ledger.StartFacts(
        server_started_at=started,
        control_file_read=bool(facts.control_file_read),
        crash_recovery=bool(facts.crash_recovery),
        control_file_time=_moment(facts.control_file_time),
        cluster_resets=int(facts.cluster_resets),
        last_reset_at=_moment(facts.last_reset_at),
        previous_state=_text(facts.previous_state),
        previous_state_since=_moment(facts.previous_state_since),
        previous_last_ok_at=_moment(facts.previous_last_ok_at),
        stop_requested_by=int(facts.stop_requested_by),
        stop_requested_role=_text(facts.stop_requested_role),
        promoted_at=_moment(facts.promoted_at),
        timeline=int(facts.timeline),
        new_primary=spi.setting("cluster_name") or "",
        old_primary=ledger.primary_of(spi.setting("primary_conninfo") or ""),
    )


class EventLog:
    """The events of one worker's heartbeats; state lives across ticks."""

    def __init__(self, table: HeartbeatTable) -> None:
        self.table = table
        self.gap = timedelta(0)
        self.kept_seconds = 0
        self._settings = (0, 0)
        self._insert: spi.Plan | None = None
        self._prune: spi.Plan | None = None
        self._next_prune = 0.0
        self._failing: str | None = None  # the last write error logged
        self.started = False  # the start's events are committed
        self.last_heartbeat: datetime | None = None  # the last committed one, as this worker saw it
        # This worker's first committed heartbeat (its transaction's time, as its row), and the
        # table's newest before it: the gap its start ends, written with a later heartbeat if the
        # first could not write it.
        self.first_heartbeat: datetime | None = None
        self._pending_first: datetime | None = None
        self._before_start: tuple[datetime | None] | None = None  # None: not read yet
        self.failures = 0  # failed ticks since it
        self.first_failure: tuple[str, str] | None = None
        self.first_failed_at: datetime | None = None
        self.refused_since: datetime | None = None  # the probe's refusal the ledger recorded
        self._probing = False  # alive_worker.probe_role is set
        # This tick's, until its commit is known.
        self._pending_at: datetime | None = None
        self._pending_start = False
        self._pending_refused: tuple[datetime | None] | None = None
        self._look_again_at = 0.0
        self._attach_failures = 0
        self.schema = ""  # the extension's, where the events table is
        self.qualified = ""

    def attach(self, table: HeartbeatTable, interval_ms: int, retention_s: int) -> None:
        """Follows the heartbeat table and the settings; finds the events table if not found yet
        (the extension may have been created or updated since)."""
        self.table = table
        self._settings = (interval_ms, retention_s)
        self.gap = timedelta(milliseconds=interval_ms * GAP_INTERVALS)
        self.kept_seconds = 0 if retention_s == 0 else max(retention_s, EVENTS_KEPT_SECONDS)
        self._probing = bool(settings.snapshot().probe_role)
        if self._insert is not None:
            return
        self._look_again_at = time.monotonic() + LOOK_AGAIN_SECONDS
        try:
            with spi.subtransaction():
                self._prepare()
        except spi.SPIError as error:
            # The heartbeat goes on without a ledger for now; the start's events wait for it.
            if error.message != self._failing:
                log.warning(
                    "alive_worker keeps no ledger for now: %s (SQLSTATE %s); it tries again",
                    error.message,
                    error.sqlstate,
                )
            self._failing = error.message
            self._insert = self._prune = None
            retry = min(LOOK_AGAIN_SECONDS, FIRST_RETRY_SECONDS * 2**self._attach_failures)
            self._attach_failures += 1
            self._look_again_at = time.monotonic() + retry
            return
        self._attach_failures = 0

    def _prepare(self) -> None:
        rows = spi.execute(_EVENTS_TABLE)
        if not rows:
            log.debug("alive_worker keeps no ledger: no table events of extension alive_worker 1.3 here")
            return
        schema = rows[0][0]
        assert schema is not None
        self.schema = schema
        self.qualified = spi.qualified_name(schema, "events")
        self._insert = spi.prepare(
            f"""INSERT INTO {self.qualified}
                    (kind, cause, detail, at, outage_from, sqlstate, timeline, heartbeat_table)
                VALUES ($1, $2, $3, COALESCE($4::pg_catalog.timestamptz, pg_catalog.now()),
                        $5::pg_catalog.timestamptz, $6, $7::pg_catalog.int4, $8)""",
            ["text"] * 8,
            keep=True,
            as_owner_of=spi.TableAccess.of_the_extension(spi.TableAccess.for_insert(schema, "events")),
        )
        self._prune = spi.prepare(
            f"""DELETE FROM {self.qualified}
                WHERE at < pg_catalog.now() - pg_catalog.make_interval(secs => $1::pg_catalog.float8)""",
            ["text"],
            keep=True,
            as_owner_of=spi.TableAccess.of_the_extension(spi.TableAccess.for_delete(schema, "events")),
        )

    def tick_begins(self, previous_committed: bool) -> None:
        """The outcome of the previous tick's commit: what it wrote now counts."""
        if self._pending_at is not None:
            if previous_committed:
                self.last_heartbeat = self._pending_at
                self.first_heartbeat = self.first_heartbeat or self._pending_first
                self.started = self.started or self._pending_start
                if self._pending_refused is not None:
                    self.refused_since = self._pending_refused[0]
                self.failures = 0
                self.first_failure = None
                self.first_failed_at = None
            else:
                self.tick_failed("", "the tick's commit failed")
        self._pending_at = None
        self._pending_start = False
        self._pending_refused = None

    def tick_failed(self, sqlstate: str, message: str) -> None:
        if self.failures == 0:
            self.first_failure = (sqlstate, message)
            self.first_failed_at = datetime.now(UTC)
        self.failures += 1

    def heartbeat_written(self) -> None:
        """In the tick's transaction, after its heartbeat: the events of a gap this heartbeat ends."""
        now = datetime.now(UTC)
        self._pending_at = now
        if self.first_heartbeat is None:
            # Before any heartbeat of this worker's has committed, whether or not the ledger is
            # ready yet: its start's events may be written ticks later.
            if self._before_start is None:
                self._before_start = (self._read_last_heartbeat(),)
            self._pending_first = self._transaction_start() or now
        if self._insert is None:
            # CREATE EXTENSION, or the grant, may come after the worker's start.
            if time.monotonic() < self._look_again_at:
                return
            self.attach(self.table, *self._settings)
            if self._insert is None:
                return
        # Imported only now: a database without the extension keeps no ledger.
        from alive_worker import ledger

        if not self.started:
            # Written with this worker's first heartbeat; if that tick could not write them (a
            # lock, the tick timeout), with a later one, for the gap the first heartbeat ended.
            first = self.first_heartbeat or now
            last = self._before_start[0] if self._before_start is not None else None
            facts = start_facts()
            # Promoted: did the old primary write its last heartbeat as it shut down?
            old_primary_shut_down = facts.promoted_at is not None and self._newest_event_kind() == "stopping"
            found = ledger.start_events(facts, last, first, self.gap, old_primary_shut_down)
            if self.first_heartbeat is not None:
                from dataclasses import replace  # as the ledger does: not on a plain tick's path

                found = [replace(event, at=event.at or first) for event in found]
            self._pending_start = self._write(found)
        elif self.last_heartbeat is not None and now - self.last_heartbeat > self.gap:
            self._write(
                [
                    ledger.resumed_event(
                        self.last_heartbeat, self.failures, self.first_failure, self.first_failed_at, at=now
                    )
                ]
            )
        if self._probing:
            self._probe_events()
        self._prune_if_due()

    def _probe_events(self) -> None:
        """A refusal of the client-path probe, or its end, since the last tick."""
        facts = spi.given_tick().probe
        if not facts.probing:
            return
        from alive_worker import ledger

        events = ledger.probe_events(
            self.refused_since,
            bool(facts.failing),
            _moment(facts.last_probe_at),
            _moment(facts.last_ok_at),
            _text(facts.sqlstate),
            _text(facts.message),
        )
        if events and self._write(events):
            event = events[0]
            self._pending_refused = (event.at if event.kind == "refused" else None,)

    def server_shutting_down(self) -> None:
        """In the transaction of the last heartbeat before the server's shutdown."""
        if self._insert is None:
            # The extension may have come since the last look (LOOK_AGAIN_SECONDS): a standby
            # promoted next names a switchover only if this event is there.
            self.attach(self.table, *self._settings)
            if self._insert is None:
                return
        from alive_worker import ledger

        self._write([ledger.shutdown_event()])

    def _newest_event_kind(self) -> str | None:
        """The kind of this heartbeat table's newest event (replicated from the old primary, on a
        standby just promoted)."""
        try:
            with spi.subtransaction():
                plan = spi.prepare(
                    f"""SELECT kind FROM {self.qualified}
                        WHERE heartbeat_table OPERATOR(pg_catalog.=) $1
                        ORDER BY at DESC LIMIT 1""",
                    ["text"],
                    as_owner_of=spi.TableAccess.of_the_extension(
                        spi.TableAccess.for_select(self.schema, "events")
                    ),
                )
                rows = plan.execute(self.table.qualified)
        except spi.SPIError as error:
            log.debug("alive_worker cannot read the ledger's newest event: %s", error.message)
            return None
        return str(rows[0][0]) if rows else None

    def _transaction_start(self) -> datetime | None:
        """now(), the time of this tick's heartbeat row (the tick may have waited since)."""
        try:
            with spi.subtransaction():
                # numeric, to the microsecond: the row's own time, as the report reads it.
                rows = spi.execute("SELECT EXTRACT(epoch FROM pg_catalog.now())")
        except spi.SPIError:
            return None
        return _from_epoch_text(rows[0][0])

    def _read_last_heartbeat(self) -> datetime | None:
        """The table's newest heartbeat but this tick's, read as its owner; else the previous worker's."""
        try:
            with spi.subtransaction():
                plan = spi.prepare(
                    # The newest of the last rows by pk but this tick's own (stamped now()):
                    # a few stray rows of a client's, with high pks or odd times, are outvoted
                    # (a hundred are not: docs/SECURITY.md, a role with INSERT).
                    # EXTRACT's numeric, not date_part's float8, whose text a database's
                    # extra_float_digits rounds; -infinity is no heartbeat.
                    f"""SELECT EXTRACT(epoch FROM pg_catalog.max(ts)::pg_catalog.timestamptz)
                        FROM (SELECT ts FROM {self.table.qualified} ORDER BY pk DESC LIMIT {LAST_ROWS_READ}) newest
                        WHERE ts::pg_catalog.timestamptz OPERATOR(pg_catalog.<) pg_catalog.now()
                          AND pg_catalog.isfinite(ts)""",
                    as_owner_of=spi.TableAccess.for_select(self.table.schema, self.table.table),
                )
                rows = plan.execute()
        except spi.SPIError as error:
            log.debug(
                "alive_worker cannot read the last heartbeat of %s: %s", self.table.qualified, error.message
            )
            return start_facts().previous_last_ok_at
        return _from_epoch_text(rows[0][0]) if rows else None

    def _write(self, events: list[ledger.NewEvent]) -> bool:
        assert self._insert is not None
        try:
            with spi.subtransaction():
                for event in events:
                    self._insert.execute(
                        event.kind,
                        event.cause,
                        event.detail,
                        None if event.at is None else event.at.isoformat(),
                        None if event.outage_from is None else event.outage_from.isoformat(),
                        event.sqlstate,
                        None if event.timeline is None else str(event.timeline),
                        self.table.qualified,
                    )
        except spi.SPIError as error:
            if error.message != self._failing:
                log.warning(
                    "alive_worker cannot record the ledger's events in %s: %s (SQLSTATE %s)%s",
                    self.qualified,
                    error.message,
                    error.sqlstate,
                    f"; {error.hint}" if error.hint else "",
                )
            self._failing = error.message
            return False
        if self._failing is not None:
            log.info("alive_worker records the ledger's events in %s again", self.qualified)
            self._failing = None
        for event in events:
            log.info("alive_worker ledger: %s (%s): %s", event.kind, event.cause, event.detail)
        return True

    def _prune_if_due(self) -> None:
        now = time.monotonic()
        if self._prune is None or self.kept_seconds == 0 or now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_SECONDS
        try:
            with spi.subtransaction():
                self._prune.execute(str(self.kept_seconds))
        except spi.SPIError as error:
            log.warning("alive_worker cannot delete old events from %s: %s", self.qualified, error.message)

    def free(self) -> None:
        for plan in (self._insert, self._prune):
            if plan is not None:
                plan.free()
