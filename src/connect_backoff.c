/*
 * connect_backoff.c
 *		Waiting longer between attempts to connect after repeated failures.
 *
 * A failed connection (a database dropped, a role without LOGIN) is a FATAL
 * exit, and the postmaster starts the worker again after its restart delay.
 * The crash guard counts such starts; after repeated failures the worker
 * waits more before the next attempt, up to five minutes, so that a
 * misconfigured server does not fill its log.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#include "alive_worker.h"
#include "connect_backoff.h"
#include "schedule.h"
#include "worker_status.h"

#define MAX_CONNECT_DELAY_SECONDS 300

/*
 * How long a worker waits, once started again, before its next attempt to
 * connect after failed_attempts failures in a row.
 */
static long
connect_delay_seconds(int failed_attempts)
{
	int			doublings = Min(failed_attempts - 1, 6);

	if (failed_attempts <= 0)
		return 0;
	return Min(WORKER_RESTART_DELAY_SECONDS * ((1L << doublings) - 1),
			   MAX_CONNECT_DELAY_SECONDS - WORKER_RESTART_DELAY_SECONDS);
}

/*
 * Each failed attempt to connect is a FATAL exit, retried after the restart
 * delay; after repeated failures, wait longer before the next attempt.
 */
void
wait_before_connecting(int failed_attempts)
{
	long		delay_s = connect_delay_seconds(failed_attempts);
	int64		until;

	if (delay_s <= 0)
		return;
	worker_status_backing_off(worker_index,
							  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_s * 1000));
	ereport(LOG,
			(errmsg("alive_worker waiting %ld s more before connecting again, after %d failed attempts",
					delay_s, failed_attempts)));
	until = monotonic_us() + (int64) delay_s * 1000000;
	for (int64 now = monotonic_us(); now < until; now = monotonic_us())
		(void) sleep_and_handle_signals((long) ((until - now) / 1000) + 1);
}

/*
 * Claims the status slot before an attempt to connect, so that the view
 * shows the attempt and its FATAL.  Should it fail, the next comes after the
 * restart delay and the wait for one more failure.
 */
void
claim_slot_to_connect(int earlier_failures)
{
	long		next_in_s = WORKER_RESTART_DELAY_SECONDS + connect_delay_seconds(earlier_failures + 1);

	if (!worker_status_connecting(worker_index, earlier_failures,
								  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), next_in_s * 1000)))
		worker_status_exit_as_duplicate(worker_database_name);
}
