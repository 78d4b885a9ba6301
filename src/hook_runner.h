/*
 * hook_runner.h
 *		Running alive_worker.hook (hook_runner.c).
 */
#ifndef ALIVE_WORKER_HOOK_RUNNER_H
#define ALIVE_WORKER_HOOK_RUNNER_H

/* Once Python runs: tells the bridge why a hook must end (SIGTERM, timeout, cancel). */
extern void hook_runner_init(void);

/*
 * Runs the hook inside the tick's transaction.  Returns normally if it
 * succeeded, or failed and hook_failure = log; otherwise raises its ERROR.
 */
extern void run_hook(void);

#endif							/* ALIVE_WORKER_HOOK_RUNNER_H */
