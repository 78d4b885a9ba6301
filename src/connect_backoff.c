/*
 * connect_backoff.c
 *		How long to wait between attempts to connect after repeated failures.
 *
 * A failed connection (a database dropped, a role without LOGIN) is a FATAL
 * exit, and the postmaster starts the worker again after its restart delay.
 * The crash guard counts such starts; after repeated failures the worker
 * waits more before the next attempt, up to five minutes, so that a
 * misconfigured server does not fill its log.  A leaf: it computes delays;
 * the shim waits them out and shows them.
 */
#include "postgres.h"

#include "connect_backoff.h"

#define MAX_CONNECT_DELAY_SECONDS 300

/*
 * How long a worker waits, once started again, before its next attempt to
 * connect after failed_attempts failures in a row.
 */
long
connect_delay_seconds(int failed_attempts, int restart_delay_s)
{
	int			doublings = Min(failed_attempts - 1, 6);

	if (failed_attempts <= 0)
		return 0;
	return Min(restart_delay_s * ((1L << doublings) - 1),
			   MAX_CONNECT_DELAY_SECONDS - restart_delay_s);
}

/*
 * Should the attempt after earlier_failures fail, how long until the next:
 * the restart delay and the wait for one more failure.
 */
long
connect_retry_in_seconds(int earlier_failures, int restart_delay_s)
{
	return restart_delay_s + connect_delay_seconds(earlier_failures + 1, restart_delay_s);
}
