/*
 * failure_log.h
 *		Reporting failed ticks and failed hooks without flooding the log
 *		(failure_log.c).
 */
#ifndef ALIVE_WORKER_FAILURE_LOG_H
#define ALIVE_WORKER_FAILURE_LOG_H

#include "datatype/timestamp.h"

/* One record per kind of failure: what failed last, and how often since. */
typedef struct FailureLog
{
	bool		of_hooks;		/* the hook's failures, not the ticks' */
	int			sqlerrcode;
	char	   *message;		/* in TopMemoryContext; NULL when none */
	int64		in_a_row;
	int64		unreported;
	TimestampTz last_report_at;
} FailureLog;

extern FailureLog tick_failure_log;
extern FailureLog hook_failure_log;

/*
 * Counts a failure, given a copy of its ERROR.  Returns true when it is not
 * a repeat of the failure reported last, and the caller must report it in
 * full now; repeats are summarised at most once a minute.
 */
extern bool failure_log_failed(FailureLog *log, const ErrorData *edata);

/* It succeeded: says so once if it had been failing. */
extern void failure_log_succeeded(FailureLog *log);

/*
 * For ticks: called with the ERROR of a failed tick still current (before
 * FlushErrorState), and the caller's copy of it: emits it in full, or
 * counts it as a repeat of the failure reported last.
 */
extern void failure_log_report_current_error(const ErrorData *edata);

/* A tick succeeded: says so once if ticks had been failing. */
extern void failure_log_tick_succeeded(void);

#endif							/* ALIVE_WORKER_FAILURE_LOG_H */
