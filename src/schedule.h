/*
 * schedule.h
 *		When the worker ticks, and its sleeps (schedule.c).
 */
#ifndef ALIVE_WORKER_SCHEDULE_H
#define ALIVE_WORKER_SCHEDULE_H

#include <time.h>

/* Microseconds on the monotonic clock: what every deadline is kept in. */
extern int64 monotonic_us(void);

/* A timer's expiry: at (and every period after, unless 0), microseconds. */
static inline struct itimerspec
schedule_timer_spec(int64 at_us, int64 period_us)
{
	struct itimerspec spec;

	spec.it_value.tv_sec = at_us / 1000000;
	spec.it_value.tv_nsec = (at_us % 1000000) * 1000;
	spec.it_interval.tv_sec = period_us / 1000000;
	spec.it_interval.tv_nsec = (period_us % 1000000) * 1000;
	return spec;
}

/*
 * When the tick due at tick_deadline must be done, on the monotonic clock,
 * under a tick timeout of timeout_ms.
 */
extern int64 tick_must_end_at(int64 tick_deadline, int timeout_ms);

/* The same at now (monotonic, microseconds): pure. */
extern int64 tick_end_deadline(int64 tick_deadline, int timeout_ms, int64 now);

/*
 * The deadline of the tick after the one due at tick_deadline: one interval
 * later, or with clock_aligned the next wall-clock multiple of the interval.
 */
extern int64 schedule_next_deadline(int64 tick_deadline, int interval_ms,
									bool clock_aligned);

/*
 * The same, given the wall clock's reading minus the monotonic clock's
 * (microseconds): pure.  The functions said pure here read no clock and no
 * state, and call nothing of the server's; tests/unit/test_c_schedule.py
 * compiles them alone.
 */
extern int64 schedule_next_deadline_at(int64 tick_deadline, int interval_ms,
									   bool clock_aligned, int64 wall_offset);

/*
 * How many whole intervals the worker is late for deadline at now: the
 * ticks it skips.  Pure.
 */
extern int64 schedule_ticks_late(int64 deadline, int64 now, int interval_ms);

/*
 * The deadline to wait for at now: deadline, or past the ticks skipped,
 * which are added to *skipped.  Pure.
 */
extern int64 schedule_skip_late_ticks(int64 deadline, int64 now, int interval_ms,
									  int64 *skipped);

/*
 * Creates the timer the worker sleeps on between ticks; returns false, with
 * errno set, if it cannot.
 */
extern bool schedule_init(void);

/*
 * The sleeps: until the latch is set or the time comes, and in any case
 * while the postmaster lives.  They return whether the postmaster died; the
 * caller then acts on signals, and exits.
 */
typedef enum SleepOutcome
{
	SLEPT,
	POSTMASTER_DIED,
	TIMER_FAILED				/* the deadline timer could not be set; errno */
} SleepOutcome;

/* Until the latch is set or timeout_ms passes (-1: no timeout). */
extern SleepOutcome schedule_sleep_ms(long timeout_ms);

/* Until the monotonic clock reaches deadline (microseconds), or the latch is set. */
extern SleepOutcome schedule_sleep_until(int64 deadline, int interval_ms);

#endif							/* ALIVE_WORKER_SCHEDULE_H */
