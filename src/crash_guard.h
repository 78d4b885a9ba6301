/*
 * crash_guard.h
 *		The worker's record of how its earlier runs ended (crash_guard.c).
 */
#ifndef ALIVE_WORKER_CRASH_GUARD_H
#define ALIVE_WORKER_CRASH_GUARD_H

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

#endif							/* ALIVE_WORKER_CRASH_GUARD_H */
