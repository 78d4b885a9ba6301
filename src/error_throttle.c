/*-------------------------------------------------------------------------
 *
 * error_throttle.c
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

#include "error_throttle.h"

#define REPEAT_REPORT_INTERVAL_MS (60 * 1000)

ErrorThrottle	tick_errors = {.of_hooks = false};
ErrorThrottle	hook_errors = {.of_hooks = true};

/*
 * Whether a failure (sqlerrcode, message; NULL for none) repeats the one
 * reported last (last_message NULL: none since the last success).
 */
bool
error_throttle_repeats(const char *last_message, int last_sqlerrcode,
					   const char *message, int sqlerrcode)
{
	return last_message != NULL &&
		sqlerrcode == last_sqlerrcode &&
		strcmp(message ? message : "", last_message) == 0;
}

/* Whether repeats counted since last_report_at are due a summary at now. */
bool
error_throttle_summary_due(TimestampTz last_report_at, TimestampTz now)
{
	/* As TimestampDifferenceExceeds, which is the server's. */
	return now - last_report_at >= (int64) REPEAT_REPORT_INTERVAL_MS * 1000;
}

static void
report_repeats(ErrorThrottle *throttle)
{
	if (throttle->unreported == 0)
		return;
	if (throttle->of_hooks)
		ereport(LOG,
				(errmsg("alive_worker hook still failing: %s (SQLSTATE %s), %lld more failures since it was last reported",
						throttle->message, unpack_sql_state(throttle->sqlerrcode),
						(long long) throttle->unreported)));
	else
		ereport(LOG,
				(errmsg("alive_worker tick still failing: %s (SQLSTATE %s), %lld more failed ticks since it was last reported",
						throttle->message, unpack_sql_state(throttle->sqlerrcode),
						(long long) throttle->unreported)));
	throttle->unreported = 0;
	throttle->last_report_at = GetCurrentTimestamp();
}

bool
error_throttle_failed(ErrorThrottle *throttle, const ErrorData *edata)
{
	throttle->in_a_row++;
	if (error_throttle_repeats(throttle->message, throttle->sqlerrcode,
							   edata->message, edata->sqlerrcode))
	{
		throttle->unreported++;
		if (error_throttle_summary_due(throttle->last_report_at, GetCurrentTimestamp()))
			report_repeats(throttle);
		return false;
	}
	report_repeats(throttle);
	if (throttle->message != NULL)
		pfree(throttle->message);
	throttle->message = MemoryContextStrdup(TopMemoryContext,
									   edata->message ? edata->message : "");
	throttle->sqlerrcode = edata->sqlerrcode;
	throttle->last_report_at = GetCurrentTimestamp();
	return true;
}

void
error_throttle_succeeded(ErrorThrottle *throttle)
{
	if (throttle->in_a_row == 0)
		return;
	report_repeats(throttle);
	if (throttle->of_hooks)
		ereport(LOG,
				(errmsg("alive_worker hook succeeded again after %lld failures",
						(long long) throttle->in_a_row)));
	else
		ereport(LOG,
				(errmsg("alive_worker heartbeats resumed after %lld failed ticks",
						(long long) throttle->in_a_row)));
	throttle->in_a_row = 0;
	if (throttle->message != NULL)
		pfree(throttle->message);
	throttle->message = NULL;
}

void
error_throttle_report_current_error(const ErrorData *edata)
{
	if (error_throttle_failed(&tick_errors, edata))
		EmitErrorReport();
}

void
error_throttle_tick_succeeded(void)
{
	error_throttle_succeeded(&tick_errors);
}
