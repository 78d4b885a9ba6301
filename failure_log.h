/*
 * failure_log.h
 *		Reporting failed ticks without flooding the log (failure_log.c).
 */
#ifndef ALIVE_WORKER_FAILURE_LOG_H
#define ALIVE_WORKER_FAILURE_LOG_H

/*
 * Called with the ERROR of a failed tick still current (before
 * FlushErrorState): emits it in full, or counts it as a repeat of the
 * failure reported last.
 */
extern void failure_log_report_current_error(void);

/* A tick succeeded: says so once if ticks had been failing. */
extern void failure_log_tick_succeeded(void);

#endif							/* ALIVE_WORKER_FAILURE_LOG_H */
