/*
 * connect_backoff.h
 *		Backing off between attempts to connect (connect_backoff.c).
 */
#ifndef ALIVE_WORKER_CONNECT_BACKOFF_H
#define ALIVE_WORKER_CONNECT_BACKOFF_H

/*
 * After failed_attempts failures in a row, how long to wait before the next
 * attempt, beyond the postmaster's restart delay of restart_delay_s.
 */
extern long connect_delay_seconds(int failed_attempts, int restart_delay_s);

/* Should this attempt fail, when the next one comes, from now. */
extern long connect_retry_in_seconds(int earlier_failures, int restart_delay_s);

#endif							/* ALIVE_WORKER_CONNECT_BACKOFF_H */
