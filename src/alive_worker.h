/*
 * alive_worker.h
 *		What the shim's other modules need of alive_worker.c.
 */
#ifndef ALIVE_WORKER_H
#define ALIVE_WORKER_H

#include <time.h>

#include "postmaster/bgworker.h"

/* A timer's expiry: at (and every period after, unless 0), microseconds. */
static inline struct itimerspec
alive_worker_timer_spec(int64 at_us, int64 period_us)
{
	struct itimerspec spec;

	spec.it_value.tv_sec = at_us / 1000000;
	spec.it_value.tv_nsec = (at_us % 1000000) * 1000;
	spec.it_interval.tv_sec = period_us / 1000000;
	spec.it_interval.tv_nsec = (period_us % 1000000) * 1000;
	return spec;
}

/* Fills in the registration of the worker for configured database index. */
extern void alive_worker_describe(BackgroundWorker *worker, int index);

#endif							/* ALIVE_WORKER_H */
