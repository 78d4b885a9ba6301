/*
 * log_watch.c
 *		What the worker learns from its own log messages: a FATAL to show in
 *		the status view, and a synchronous-replication wait that was cut
 *		short.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "replication/syncrep.h"

#include "error_throttle.h"
#include "log_watch.h"
#include "tick_timeout.h"
#include "worker_status.h"

/* The tick's commit is running: what a WARNING then means (watch_log) */
static bool committing = false;
static bool commit_wait_cancelled = false;
static emit_log_hook_type previous_emit_log_hook = NULL;

/*
 * Sees every message this worker logs.  A FATAL ends the run: record it in
 * the status slot, where alive_worker.workers shows it (a failed connection
 * is only ever seen here: the FATAL is raised inside
 * BackgroundWorkerInitializeConnection, and the process exits right after).
 *
 * During the tick's commit, the one WARNING PostgreSQL raises is
 * SyncRepWaitForLSN's "canceling wait for synchronous replication" when the
 * tick timeout cancels the wait: the commit is then local only.  run_tick
 * reports that as a failed tick, throttled by error_throttle.c, so the WARNING
 * itself, which would repeat at every tick, is kept out of the log.
 */
static void
watch_log(ErrorData *edata)
{
	if (edata->elevel >= FATAL)
		worker_status_record_fatal(edata);
	else if (committing && edata->elevel == WARNING && edata->sqlerrcode == ERRCODE_WARNING)
	{
		commit_wait_cancelled = true;
		edata->output_to_server = false;
	}
	if (previous_emit_log_hook)
		previous_emit_log_hook(edata);
}

void
log_watch_install(void)
{
	previous_emit_log_hook = emit_log_hook;
	emit_log_hook = watch_log;
}

void
log_watch_commit_begin(void)
{
	committing = true;
	commit_wait_cancelled = false;
}

/*
 * A commit cancelled by the tick timeout while it waited for the synchronous
 * standbys returns as if all went well (the cancel is consumed, with a
 * WARNING): the heartbeat is local only.  Told by that WARNING, or by the
 * timer having fired during the commit and its cancel request gone; an
 * interrupt acted on anywhere else in the commit would have raised an ERROR
 * instead.  (Before the commit, Python may have caught a cancel: retention
 * does, and halves its batch; hence fired_before_commit.)  stopping: SIGTERM
 * came, whose cancel is not the timer's.
 */
bool
log_watch_commit_end(bool fired_before_commit, bool stopping)
{
	committing = false;
	return !(commit_wait_cancelled ||
			 (!fired_before_commit && tick_timeout_fired() &&
			  !QueryCancelPending && !stopping));
}

/*
 * The heartbeat committed locally, but the wait for the synchronous
 * standbys that every client's commit makes was cancelled by the tick
 * timeout: clients could not commit as durably, so the tick is not OK.
 * Reported like any failed tick (once, then throttled).  Returns the
 * SQLSTATE, and the message in message.
 */
int
report_unconfirmed_commit(int64 commit_us, int timeout_ms, char *message, size_t size)
{
	MemoryContext context = CurrentMemoryContext;
	int			sqlerrcode = 0;

	PG_TRY();
	{
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("heartbeat not confirmed by a synchronous standby: committed locally only"),
				 errdetail("The commit waited %lld ms for synchronous_standby_names = '%s', as clients' commits do, until alive_worker.tick_timeout (%d ms) cancelled the wait.",
						   (long long) (commit_us / 1000), SyncRepStandbyNames, timeout_ms),
				 errhint("Check that the standbys named by synchronous_standby_names are connected and streaming.")));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		error_throttle_report_current_error(edata);
		FlushErrorState();
		sqlerrcode = edata->sqlerrcode;
		worker_status_clip(message, edata->message, size);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return sqlerrcode;
}
