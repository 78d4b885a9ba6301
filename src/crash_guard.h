/*
 * crash_guard.h
 *		The worker's record of how its earlier runs ended (crash_guard.c).
 */
#ifndef ALIVE_WORKER_CRASH_GUARD_H
#define ALIVE_WORKER_CRASH_GUARD_H

/* The crashes a record keeps, at most: the newest. */
#define MAX_RECORDED_CRASHES 32

typedef struct CrashGuardVerdict
{
	bool		disabled;		/* too many recent crashes: stay idle */
	int			recent_crashes; /* within the window, this start included */
	int			connect_failures;	/* earlier starts that failed to connect */
} CrashGuardVerdict;

/*
 * Reads the record at worker start, counts the previous run as a crash if it
 * was one, and marks this run as running.  Installs the SIGQUIT handler and
 * the exit callback that keep the record true.
 */
extern void crash_guard_start(const char *worker_name, int crash_limit,
							  int window_seconds, CrashGuardVerdict *verdict);

/* Whether the guard still holds with this (reloaded) limit. */
extern bool crash_guard_still_disabled(int crash_limit);

/* The connection succeeded: forget earlier failed attempts. */
extern void crash_guard_connected(void);

extern const char *crash_guard_record_path(void);

/*
 * The verdict's arithmetic, pure (no clock, no file, no state; compiled
 * alone by tests/unit/test_c_crash_guard.py).  The crashes that count at
 * this start, at now in seconds: crash_times (oldest first, room for
 * MAX_RECORDED_CRASHES) is rewritten to keep them, and their number
 * returned.
 */
extern int	crash_guard_count_crashes(int64 *crash_times, int crash_count,
									  bool previous_run_crashed, int64 now,
									  int window_seconds);

/* Whether crash_count recent crashes disable the worker under crash_limit (0: never). */
extern bool crash_guard_holds(int crash_count, int crash_limit);

#endif							/* ALIVE_WORKER_CRASH_GUARD_H */
