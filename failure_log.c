/*-------------------------------------------------------------------------
 *
 * failure_log.c
 *		Reporting failed ticks without flooding the log.
 *
 * A failure that repeats at every tick (a revoked privilege, a locked
 * table) would otherwise write an ERROR ten times a second at a short
 * interval.  The first occurrence is reported in full; repeats of the same
 * failure (same SQLSTATE and message) are counted and summarised in one line
 * at most once a minute; and one line says when ticks succeed again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "failure_log.h"

#define REPEAT_REPORT_INTERVAL_MS (60 * 1000)

static int	failing_sqlerrcode = 0;
static char *failing_message = NULL;	/* in TopMemoryContext */
static int64 failures_in_a_row = 0;
static int64 repeats_unreported = 0;
static TimestampTz last_report_at = 0;

static bool
same_as_last(const ErrorData *edata)
{
	return failing_message != NULL &&
		edata->sqlerrcode == failing_sqlerrcode &&
		strcmp(edata->message ? edata->message : "", failing_message) == 0;
}

static void
report_repeats(void)
{
	if (repeats_unreported == 0)
		return;
	ereport(LOG,
			(errmsg("alive_worker tick still failing: %s (SQLSTATE %s), %lld more failed ticks since it was last reported",
					failing_message, unpack_sql_state(failing_sqlerrcode),
					(long long) repeats_unreported)));
	repeats_unreported = 0;
	last_report_at = GetCurrentTimestamp();
}

void
failure_log_report_current_error(const ErrorData *edata)
{
	MemoryContext old_context = MemoryContextSwitchTo(TopMemoryContext);

	failures_in_a_row++;
	if (same_as_last(edata))
	{
		repeats_unreported++;
		if (TimestampDifferenceExceeds(last_report_at, GetCurrentTimestamp(),
									   REPEAT_REPORT_INTERVAL_MS))
			report_repeats();
	}
	else
	{
		report_repeats();
		EmitErrorReport();
		if (failing_message != NULL)
			pfree(failing_message);
		failing_message = pstrdup(edata->message ? edata->message : "");
		failing_sqlerrcode = edata->sqlerrcode;
		last_report_at = GetCurrentTimestamp();
	}
	MemoryContextSwitchTo(old_context);
}

void
failure_log_tick_succeeded(void)
{
	if (failures_in_a_row == 0)
		return;
	report_repeats();
	ereport(LOG,
			(errmsg("alive_worker heartbeats resumed after %lld failed ticks",
					(long long) failures_in_a_row)));
	failures_in_a_row = 0;
	if (failing_message != NULL)
		pfree(failing_message);
	failing_message = NULL;
}
