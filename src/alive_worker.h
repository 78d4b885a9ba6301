/*
 * alive_worker.h
 *		What the shim's other modules need of alive_worker.c: the running
 *		worker's identity and counters, and its steps.
 */
#ifndef ALIVE_WORKER_H
#define ALIVE_WORKER_H

#include <signal.h>
#include <time.h>


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

/* In a worker: which configured database it serves (its status slot) */
extern int	worker_index;
extern char *worker_database_name;

/* Heartbeats committed, and ticks skipped for lateness, since the start */
extern int64 ticks_written;
extern int64 ticks_skipped;

/* SIGTERM arrived: the worker stops after the tick in flight. */
extern volatile sig_atomic_t got_sigterm;

/*
 * One tick: a transaction in which Python writes the heartbeat, due at
 * tick_deadline (monotonic microseconds).  Returns whether it committed.
 */
extern bool worker_run_tick(int64 tick_deadline, int settings_generation,
							bool previous_committed);

/* Runs the client-path probe when it is due (alive_worker.probe_role, probe_interval). */
extern void worker_probe_if_due(void);

/* Shows this worker's settings in the status slot, after a reload too. */
extern void worker_publish_settings(void);

/* Acts on SIGTERM and SIGHUP; returns whether the settings were reloaded. */
extern bool worker_handle_signals(void);

/* Logs what the worker did, and exits with code 0 (not restarted). */
extern void worker_stop(void);

#endif							/* ALIVE_WORKER_H */
