/*
 * failure_log.h
 *		Reporting failed ticks without flooding the log (failure_log.c).
 */
#ifndef ALIVE_WORKER_FAILURE_LOG_H
#define ALIVE_WORKER_FAILURE_LOG_H

/*
 * Called with the ERROR of a failed tick still current (before
 * FlushErrorState), and the caller's copy of it: emits it in full, or
 * counts it as a repeat of the failure reported last.
 */
extern void failure_log_report_current_error(const ErrorData *edata);

/* A tick succeeded: says so once if ticks had been failing. */
extern void failure_log_tick_succeeded(void);

#endif							/* ALIVE_WORKER_FAILURE_LOG_H */
