"""alive_worker.retention: heartbeats older than it are deleted, in bounded batches.

The oldest rows are the lowest pk (one writer, a serial key), so each batch
reads at most BATCH_ROWS rows from the start of the primary key and deletes
those that are old enough: no index on ts is needed, and no batch is larger
than that, whatever the backlog.  Deletion runs in a subtransaction of the
tick, so that a failure (a role without DELETE, say) costs the heartbeat
nothing; it is logged when it starts and when it clears.  A batch that the
tick's timeout cancels is halved and tried again at the next tick, and
batches that fit grow back by a quarter, so that short intervals and busy
servers get batches that fit them.
"""

from __future__ import annotations

import time

from alive_worker import errors, pglog, spi
from alive_worker.heartbeat_table import HeartbeatTable

log = pglog.getLogger(__name__)

BATCH_ROWS = 5000
SMALLEST_BATCH_ROWS = 50
# With no backlog, look again after a tenth of the retention, at most a minute.
IDLE_CHECK_FRACTION = 10
IDLE_CHECK_MAX_SECONDS = 60.0


class Retention:
    """Deletes one batch of expired heartbeats when one is due."""

    def __init__(self, table: HeartbeatTable, retention_seconds: int) -> None:
        self.table = table
        self.max_age = f"{retention_seconds} seconds"  # an interval, as the DELETE takes it
        self.idle_check_seconds = min(IDLE_CHECK_MAX_SECONDS, retention_seconds / IDLE_CHECK_FRACTION)
        # As the table's owner (docs/SECURITY.md), with pg_catalog's now() and casts.
        self._delete = spi.prepare(
            f"""DELETE FROM {table.qualified} WHERE pk IN (
                    SELECT pk FROM (SELECT pk, ts FROM {table.qualified} ORDER BY pk LIMIT $2::pg_catalog.int4) oldest
                    WHERE ts < pg_catalog.now() - $1::pg_catalog.interval)""",
            ["text", "text"],
            keep=True,
            as_owner_of=spi.TableAccess.for_delete(table.schema, table.table),
        )
        self.batch_rows = BATCH_ROWS
        self._next_check = 0.0
        self._failing: str | None = None

    def due(self) -> bool:
        """Whether run_if_due() would delete now (a backlog, or the clock says so)."""
        return time.monotonic() >= self._next_check

    def run_if_due(self) -> None:
        """Deletes up to batch_rows expired rows, when a backlog or the clock says so."""
        now = time.monotonic()
        if now < self._next_check:
            return
        try:
            with spi.subtransaction():
                self._delete.execute(self.max_age, str(self.batch_rows))
                deleted = spi.last_rowcount()
        except spi.SPIError as error:
            if isinstance(error, errors.QueryCanceled) and self.batch_rows > SMALLEST_BATCH_ROWS:
                self.batch_rows = max(SMALLEST_BATCH_ROWS, self.batch_rows // 2)
                self._next_check = now
                return
            if error.message != self._failing:
                spi.report_retention_error(f"{error.message} (SQLSTATE {error.sqlstate})")
                log.warning(
                    "alive_worker.retention cannot delete old heartbeats from %s: %s (SQLSTATE %s)",
                    self.table.qualified,
                    error.message,
                    error.sqlstate,
                )
            self._failing = error.message
            self._next_check = now + self.idle_check_seconds
            return
        if self._failing is not None:
            spi.report_retention_error(None)
            log.info("alive_worker.retention deletes old heartbeats from %s again", self.table.qualified)
            self._failing = None
        if deleted:
            log.debug("alive_worker.retention deleted %d rows from %s", deleted, self.table.qualified)
        # While batches find rows, there may be a backlog: go on at the next tick,
        # with a batch grown back towards BATCH_ROWS after any halving.
        self._next_check = now if deleted else now + self.idle_check_seconds
        self.batch_rows = min(BATCH_ROWS, self.batch_rows + self.batch_rows // 4 + 1)

    def free(self) -> None:
        self._delete.free()
