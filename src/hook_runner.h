/*
 * hook_runner.h
 *		Running alive_worker.hook (hook_runner.c).
 */
#ifndef ALIVE_WORKER_HOOK_RUNNER_H
#define ALIVE_WORKER_HOOK_RUNNER_H

#include <signal.h>

/*
 * Runs the hook inside the tick's transaction, for heartbeat tick_number,
 * under a tick timeout of timeout_ms; stop_requested is the worker's
 * SIGTERM flag.  Returns normally if it succeeded, or failed and
 * hook_failure = log; otherwise raises its ERROR.
 */
extern void run_hook(int64 tick_number, int timeout_ms,
					 const volatile sig_atomic_t *stop_requested);

#endif							/* ALIVE_WORKER_HOOK_RUNNER_H */
