/*
 * tick_timeout.h
 *		The bound on how long a tick may run (tick_timeout.c).
 */
#ifndef ALIVE_WORKER_TICK_TIMEOUT_H
#define ALIVE_WORKER_TICK_TIMEOUT_H

#include <signal.h>

/*
 * Creates the timer and installs its signal handler; returns false, with
 * errno set, if it cannot.
 */
extern bool tick_timeout_init(void);

/*
 * Sets the timer to expire when the monotonic clock reaches end_us
 * (microseconds), unless it is set for then already: at the start of a
 * tick, or ahead of it, once its deadline is known.  Returns false, with
 * errno set, if the timer could not be set.
 */
extern bool tick_timeout_set(int64 end_us);

/*
 * Between begin and end, the timer's expiry cancels the tick in flight, as
 * a statement timeout would; outside, it does nothing.  begin returns
 * false, as tick_timeout_set, if the timer could not be set.
 */
extern bool tick_timeout_begin(int64 end_us);
extern void tick_timeout_end(void);

/*
 * Whether the timer has cancelled the tick in flight (and the cancel is not
 * explained yet).  Only reads a flag: asked between the waits for the hook host.
 */
extern bool tick_timeout_fired(void);

/* The flag itself, for the bridge, which reads it between those waits. */
extern const volatile sig_atomic_t *tick_timeout_fired_flag(void);

/*
 * Called in PG_CATCH with the tick's ERROR current: if that ERROR is the
 * cancel this timeout caused, replaces it with one that says so (with the
 * message of a statement timeout, and which setting it was).
 */
extern void tick_timeout_explain_current_error(int timeout_ms);

#endif							/* ALIVE_WORKER_TICK_TIMEOUT_H */
