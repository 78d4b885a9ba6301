/*
 * error_throttle.h
 *		Reporting failed ticks and failed hooks without flooding the log
 *		(error_throttle.c).
 */
#ifndef ALIVE_WORKER_ERROR_THROTTLE_H
#define ALIVE_WORKER_ERROR_THROTTLE_H

#include "datatype/timestamp.h"

/* One record per kind of failure: what failed last, and how often since. */
typedef struct ErrorThrottle
{
	bool		of_hooks;		/* the hook's failures, not the ticks' */
	int			sqlerrcode;
	char	   *message;		/* in TopMemoryContext; NULL when none */
	int64		in_a_row;
	int64		unreported;
	TimestampTz last_report_at;
} ErrorThrottle;

extern ErrorThrottle tick_errors;
extern ErrorThrottle hook_errors;

/*
 * Counts a failure, given a copy of its ERROR.  Returns true when it is not
 * a repeat of the failure reported last, and the caller must report it in
 * full now; repeats are summarised at most once a minute.
 */
extern bool error_throttle_failed(ErrorThrottle *throttle, const ErrorData *edata);

/* It succeeded: says so once if it had been failing. */
extern void error_throttle_succeeded(ErrorThrottle *throttle);

/*
 * For ticks: called with the ERROR of a failed tick still current (before
 * FlushErrorState), and the caller's copy of it: emits it in full, or
 * counts it as a repeat of the failure reported last.
 */
extern void error_throttle_report_current_error(const ErrorData *edata);

/* A tick succeeded: says so once if ticks had been failing. */
extern void error_throttle_tick_succeeded(void);

/*
 * The throttle's two judgements, pure (no clock, no memory, no log; compiled
 * alone by tests/unit/test_c_error_throttle.py): whether a failure (its
 * sqlerrcode and message, NULL for none) repeats the one reported last
 * (last_message NULL: none), and whether the repeats counted since
 * last_report_at are due their summary at now (once a minute).
 */
extern bool error_throttle_repeats(const char *last_message, int last_sqlerrcode,
								   const char *message, int sqlerrcode);
extern bool error_throttle_summary_due(TimestampTz last_report_at, TimestampTz now);

#endif							/* ALIVE_WORKER_ERROR_THROTTLE_H */
