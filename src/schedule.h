/*
 * schedule.h
 *		When the worker ticks (schedule.c).
 */
#ifndef ALIVE_WORKER_SCHEDULE_H
#define ALIVE_WORKER_SCHEDULE_H

/* Microseconds on the monotonic clock: what every deadline is kept in. */
extern int64 monotonic_us(void);

/* The tick's timeout: alive_worker.tick_timeout, or by default the interval. */
extern int	tick_timeout_in_force_ms(void);

/* When the tick due at tick_deadline must be done, on the monotonic clock. */
extern int64 tick_must_end_at(int64 tick_deadline);

/* Creates the timer the worker sleeps on between ticks; FATAL if it cannot. */
extern void schedule_init(void);

/*
 * Sleeps until the latch is set or timeout_ms passes (-1: no timeout), then
 * acts on signals.  Returns whether the settings were reloaded.
 */
extern bool sleep_and_handle_signals(long timeout_ms);

/* The crash guard holds: waits for SIGTERM, or a reload that lifts it. */
extern void stay_idle_while_disabled(int recent_crashes);

/*
 * On a hot standby, waits until recovery ends.  Returns whether it waited.
 */
extern bool wait_for_recovery_to_end(void);

/* Ticks on the grid of deadlines until SIGTERM; never returns. */
extern void run_schedule(void);

#endif							/* ALIVE_WORKER_SCHEDULE_H */
