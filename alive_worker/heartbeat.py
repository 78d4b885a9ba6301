"""The default tick: one heartbeat row per tick, through a kept plan.

This is the heartbeat's policy (message, numbering, the table, retention, the
hook's call), whoever runs its statements: ``alive_worker.spi`` is the
transport (alive_worker/transport.py names what it must offer).  In the
worker it is the guarded SPI bridge; in ``alive-worker run`` it is
alive_worker.runner.client_spi, a psycopg connection, put in its place
before this module is imported.  What only the worker has (the ledger, the
hook host) is behind the methods a transport's Heartbeat overrides:
_open_ledger, run_hook.
"""

from __future__ import annotations

from alive_worker import pglog, spi
from alive_worker.heartbeat_table import HeartbeatTable
from alive_worker.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from alive_worker import hooks
    from alive_worker._hook_client import HookHost
    from alive_worker.events import EventLog
    from alive_worker.retention import Retention

log = pglog.getLogger(__name__)

# The hook host started with the worker, until the first tick's hook takes it.
_early_host: HookHost | None = None


def start_hook_host_early() -> None:
    """At the worker's start, outside any transaction: starts the hook host now, so that the first
    tick's hook finds it ready (its start, some 50 ms and more on a busy machine, would otherwise
    fall in the first tick and outlast a short tick timeout).  The hook's import-time statements
    wait for that tick to answer them.  A failure here is left to the first tick to meet again."""
    global _early_host
    spec = Settings.current().hook
    if not spec:
        return
    from alive_worker._hook_client import HookHost

    host = HookHost(spec)
    try:
        host.start()
    except Exception as error:
        log.debug("alive_worker could not start the hook host early: %s", error)
        host.stop()
        return
    _early_host = host


class Heartbeat:
    """Writes the heartbeat the shim numbered; state lives across ticks."""

    def __init__(self) -> None:
        self.settings = Settings.current()
        self.role = spi.current_role()
        self._generation: int | None = None
        self._insert: spi.Plan | None = None
        self._table: HeartbeatTable | None = None
        self._retention: Retention | None = None
        self._stale: list[spi.Plan | Retention] = []
        self._host: HookHost | None = None  # runs the hook, once there is one
        self._events: EventLog | None = None  # the ledger's, once the table is known
        self._tick: hooks.Tick | None = None  # what the hook is told
        # The settings generation that the plans and the hook are ready for;
        # None when anything must be done again before the next INSERT.
        self._ready_for: int | None = None
        self._debug = False  # the server logs DEBUG1: set on each reload

    def tick(
        self,
        number: int,
        settings_generation: int,
        previous_committed: bool,
        last_before_shutdown: bool = False,
    ) -> None:
        """Writes heartbeat number (the shim counts those committed) in the shim's transaction.
        last_before_shutdown: the server is shutting down; the ledger says so, and no hook runs."""
        events = self._events
        if events is not None:
            events.tick_begins(previous_committed)
        try:
            self._write(number, settings_generation)
        except spi.SPIError as error:
            if self._events is not None:
                self._events.tick_failed(error.sqlstate, error.message)
            raise
        if last_before_shutdown:
            if self._events is not None:
                self._events.server_shutting_down()
            return
        if self.settings.hook:
            # Imported only then: the tick without a hook needs none of it.
            from alive_worker import hooks

            self._tick = hooks.Tick(number, f"{self.settings.message} {number}", self.settings)
        if self._retention is not None:
            self._retention.run_if_due()

    def inserts_alone(self, settings_generation: int) -> bool:
        """Whether the next tick() runs no statement after the heartbeat's INSERT, as far as it can
        tell before: the plans ready for this generation, no ledger, no hook, no retention batch
        due.  A transport may then send the transaction's end with the INSERT (the runner's
        client_spi does: one round trip).  A statement that runs after all (a retention batch
        that fell due meanwhile, the catalog read of an INSERT that wrote nothing) is the
        transport's to run in a transaction of its own."""
        if settings_generation != self._ready_for or self._events is not None or self.settings.hook:
            return False
        return self._retention is None or not self._retention.due()

    def _write(self, number: int, settings_generation: int) -> None:
        """The heartbeat's INSERT, and the ledger's events of a gap it ends."""
        # One test on the path of an ordinary tick; the rest only after a change.
        if settings_generation != self._ready_for:
            self._prepare(settings_generation)
        insert = self._insert
        assert insert is not None

        message = f"{self.settings.message} {number}"
        if self._debug:
            log.debug(
                "alive_worker executing query [%s] with [%s] as [%s]",
                insert.query,
                message,
                self.role,
            )
        try:
            insert.execute_text(message)
        except spi.SPIError:
            # The table may be gone or changed: look again next tick (a
            # deferred trigger added meanwhile is named then).
            self._discard_insert()
            raise
        # A BEFORE trigger that returns NULL, or a DO INSTEAD rule, turns the
        # INSERT into nothing without an error: no row, no heartbeat.
        if insert.rows_processed() == 0:
            assert self._table is not None
            error = self._table.wrote_nothing()
            # Prepared again next tick: a plan rewritten into nothing names no
            # table, so dropping the rule would not invalidate it.
            self._discard_insert()
            raise error
        if self._debug:
            log.debug("alive_worker query OK")
        if self._events is not None:
            self._events.heartbeat_written()

    def _prepare(self, settings_generation: int) -> None:
        """Frees stale plans, follows a reload, loads the hook, prepares the INSERT."""
        for plan in self._stale:
            plan.free()
        self._stale.clear()
        if settings_generation != self._generation:
            self._reload(settings_generation)
        if self._insert is None:
            table = HeartbeatTable(self.settings.schema, self.settings.table, self.role)
            self._insert = table.prepare_insert()
            self._table = table
            if self._events is None:
                self._events = self._open_ledger(table)
            if self._events is not None:
                self._events.attach(table, self.settings.interval_ms, self.settings.retention_s)
            if self.settings.retention_s > 0:
                self._retention = self._set_up_retention(table)
            else:
                spi.report_retention_error(None)
        self._ready_for = settings_generation

    def _open_ledger(self, table: HeartbeatTable) -> EventLog | None:
        """The ledger of gaps (alive_worker.events), kept by the worker; None where there is none."""
        # Imported only then: a worker that never writes keeps no ledger.
        from alive_worker.events import EventLog

        return EventLog(table)

    def _set_up_retention(self, table: HeartbeatTable) -> Retention | None:
        """Retention for table, or None, reported, if it cannot work: the heartbeat goes on."""
        # Imported only then: the default tick keeps every row.
        from alive_worker.retention import Retention

        try:
            with spi.subtransaction():
                retention = Retention(table, self.settings.retention_s)
        except spi.SPIError as error:
            problem = f"cannot set up: {error.message} (SQLSTATE {error.sqlstate})"
            spi.report_retention_error(problem)
            log.warning("alive_worker.retention for %s %s", table.qualified, problem)
            return None
        spi.report_retention_error(None)
        return retention

    def run_hook(self) -> None:
        """Runs alive_worker.hook after tick(): the shim calls it in a subtransaction of its own.

        The hook runs in the hook host, a process of its own started here the
        first time (alive_worker/_hook_client.py); a hook that cannot be
        imported fails as the hook, never the heartbeat.
        """
        if self._host is None:
            # Imported only then: the tick without a hook starts no process.
            from alive_worker import pglog
            from alive_worker._hook_client import HookHost

            global _early_host
            pglog.hook_context = f' of alive_worker.hook = "{self.settings.hook}"'
            if _early_host is not None and _early_host.spec == self.settings.hook:
                self._host = _early_host
            else:
                if _early_host is not None:
                    _early_host.stop()
                self._host = HookHost(self.settings.hook)
            _early_host = None
        if self._tick is not None:
            # The shim shows "in the hook" in alive_worker.workers meanwhile.
            self._host.run(self._tick)

    def hook_host_pid(self) -> int | None:
        """The hook host's process, if one runs."""
        return None if self._host is None else self._host.pid()

    def _reload(self, settings_generation: int) -> None:
        previous = self.settings
        self.settings = Settings.current()
        self._generation = settings_generation
        # log_min_messages changes only with a reload, and so does this.
        self._debug = pglog.debug_enabled()
        table_settings = (self.settings.schema, self.settings.table, self.settings.retention_s)
        if table_settings != (previous.schema, previous.table, previous.retention_s):
            self._discard_insert()
        if self.settings.hook != previous.hook and self._host is not None:
            self._host.stop()
            self._host = None

    def _discard_insert(self) -> None:
        # Freed at the next tick: this transaction may be failing right now.
        for plan in (self._insert, self._retention):
            if plan is not None:
                self._stale.append(plan)
        self._insert = None
        self._retention = None
        self._ready_for = None
