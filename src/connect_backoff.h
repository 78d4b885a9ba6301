/*
 * connect_backoff.h
 *		Backing off between attempts to connect (connect_backoff.c).
 */
#ifndef ALIVE_WORKER_CONNECT_BACKOFF_H
#define ALIVE_WORKER_CONNECT_BACKOFF_H

/* After failed_attempts failures in a row, waits before the next attempt. */
extern void wait_before_connecting(int failed_attempts);

/*
 * Claims the worker's status slot before an attempt to connect, so that the
 * view shows the attempt and its FATAL; exits if another worker holds it.
 */
extern void claim_slot_to_connect(int earlier_failures);

#endif							/* ALIVE_WORKER_CONNECT_BACKOFF_H */
