/*
 * log_watch.h
 *		The worker's watch on its own log messages (log_watch.c).
 */
#ifndef ALIVE_WORKER_LOG_WATCH_H
#define ALIVE_WORKER_LOG_WATCH_H

/* Installs the emit_log_hook, at worker start. */
extern void log_watch_install(void);

/*
 * Around the tick's commit.  _end returns whether the commit is as durable
 * as clients' commits: false if its wait for the synchronous standbys was
 * cancelled by the tick timeout (that WARNING is kept out of the log).
 */
extern void log_watch_commit_begin(void);
extern bool log_watch_commit_end(bool fired_before_commit, bool stopping);

/*
 * Reports a heartbeat that committed locally only, as a failed tick.
 * Returns its SQLSTATE, and the message in message.
 */
extern int	report_unconfirmed_commit(int64 commit_us, int timeout_ms,
									  char *message, size_t size);

#endif							/* ALIVE_WORKER_LOG_WATCH_H */
