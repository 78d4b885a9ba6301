/*-------------------------------------------------------------------------
 *
 * failure_log.c
 *		Reporting failed ticks and failed hooks without flooding the log.
 *
 * A failure that repeats at every tick (a revoked privilege, a locked
 * table, a hook that raises) would otherwise write an ERROR ten times a
 * second at a short interval.  The first occurrence is reported in full
 * (a hook's with its traceback); repeats of the same failure (same SQLSTATE
 * and message) are counted and summarised in one line at most once a
 * minute; and one line says when they succeed again.  Ticks and hooks keep
 * a record each, since by default a hook fails without failing its tick.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "failure_log.h"

#define REPEAT_REPORT_INTERVAL_MS (60 * 1000)

FailureLog	tick_failure_log = {.of_hooks = false};
FailureLog	hook_failure_log = {.of_hooks = true};

static bool
same_as_last(const FailureLog *log, const ErrorData *edata)
{
	return log->message != NULL &&
		edata->sqlerrcode == log->sqlerrcode &&
		strcmp(edata->message ? edata->message : "", log->message) == 0;
}

static void
report_repeats(FailureLog *log)
{
	if (log->unreported == 0)
		return;
	if (log->of_hooks)
		ereport(LOG,
				(errmsg("alive_worker hook still failing: %s (SQLSTATE %s), %lld more failures since it was last reported",
						log->message, unpack_sql_state(log->sqlerrcode),
						(long long) log->unreported)));
	else
		ereport(LOG,
				(errmsg("alive_worker tick still failing: %s (SQLSTATE %s), %lld more failed ticks since it was last reported",
						log->message, unpack_sql_state(log->sqlerrcode),
						(long long) log->unreported)));
	log->unreported = 0;
	log->last_report_at = GetCurrentTimestamp();
}

bool
failure_log_failed(FailureLog *log, const ErrorData *edata)
{
	log->in_a_row++;
	if (same_as_last(log, edata))
	{
		log->unreported++;
		if (TimestampDifferenceExceeds(log->last_report_at, GetCurrentTimestamp(),
									   REPEAT_REPORT_INTERVAL_MS))
			report_repeats(log);
		return false;
	}
	report_repeats(log);
	if (log->message != NULL)
		pfree(log->message);
	log->message = MemoryContextStrdup(TopMemoryContext,
									   edata->message ? edata->message : "");
	log->sqlerrcode = edata->sqlerrcode;
	log->last_report_at = GetCurrentTimestamp();
	return true;
}

void
failure_log_succeeded(FailureLog *log)
{
	if (log->in_a_row == 0)
		return;
	report_repeats(log);
	if (log->of_hooks)
		ereport(LOG,
				(errmsg("alive_worker hook succeeded again after %lld failures",
						(long long) log->in_a_row)));
	else
		ereport(LOG,
				(errmsg("alive_worker heartbeats resumed after %lld failed ticks",
						(long long) log->in_a_row)));
	log->in_a_row = 0;
	if (log->message != NULL)
		pfree(log->message);
	log->message = NULL;
}

void
failure_log_report_current_error(const ErrorData *edata)
{
	if (failure_log_failed(&tick_failure_log, edata))
		EmitErrorReport();
}

void
failure_log_tick_succeeded(void)
{
	failure_log_succeeded(&tick_failure_log);
}
