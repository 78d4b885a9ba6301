/*
 * hook_runner.h
 *		Running alive_worker.hook (hook_runner.c).
 */
#ifndef ALIVE_WORKER_HOOK_RUNNER_H
#define ALIVE_WORKER_HOOK_RUNNER_H

#include <signal.h>

/*
 * Once Python runs: tells the bridge why a hook must end (SIGTERM, timeout,
 * cancel).  stop_flag is the worker's, set by its SIGTERM handler.
 */
extern void hook_runner_init(const volatile sig_atomic_t *stop_flag);

/*
 * Runs the hook inside the tick's transaction, for heartbeat tick_number,
 * under a tick timeout of timeout_ms.  Returns normally if it succeeded, or
 * failed and hook_failure = log; otherwise raises its ERROR.
 */
extern void run_hook(int64 tick_number, int timeout_ms);

#endif							/* ALIVE_WORKER_HOOK_RUNNER_H */
