/*
 * worker_states.h
 *		The worker's states: their words, and whether each means that the
 *		worker writes heartbeats.  The one list, for C and Python alike.
 *
 * scripts/write_states.py turns this list into alive_worker/_states.py, and
 * tests/unit/test_states.py fails when the two differ: add or change a state
 * here, then run the script.  The words never change once released: the
 * view, the command, the metrics and every operator's monitoring match them.
 * The last three are the view's alone (sql_functions.c): what a ticking or
 * starting worker is found waiting for; the worker never enters them.
 *
 * One line a state: STATE(enum name, words, writes heartbeats).
 */
#ifndef ALIVE_WORKER_WORKER_STATES_H
#define ALIVE_WORKER_WORKER_STATES_H

#define WORKER_STATES(STATE) \
	STATE(WORKER_STARTING, "starting", false) /* registered, not yet ticking */ \
	STATE(WORKER_SLEEPING, "sleeping", true) \
	STATE(WORKER_TICKING, "ticking", true) \
	STATE(WORKER_FAILING, "failing", false) /* asleep after a failed tick */ \
	STATE(WORKER_STOPPED, "stopped", false) /* exited on SIGTERM; not restarted */ \
	STATE(WORKER_DISABLED, "disabled by crash guard", false) /* idle: its crash guard holds */ \
	STATE(WORKER_CANNOT_CONNECT, "cannot connect", false) /* its last attempt to connect failed */ \
	STATE(WORKER_BACKING_OFF, "backing off", false) /* waiting before it connects again */ \
	STATE(WORKER_CONNECTING, "connecting", false) /* connecting again after a failure */ \
	STATE(WORKER_RESTARTING, "restarting", false) /* exited other than by SIGTERM */ \
	STATE(WORKER_IN_HOOK, "in the hook", true) /* ticking, in alive_worker.hook */ \
	STATE(WORKER_NOT_REGISTERED, "cannot register", false) /* no background worker slot for it */ \
	STATE(WORKER_PROBE_FAILING, "clients cannot write", false) /* ticks commit, the probe fails */ \
	STATE(WORKER_WAITING_FOR_RECOVERY, "waiting for recovery to end", false) /* a standby's */ \
	STATE(WORKER_BLOCKED_ON_LOCK, "blocked on a lock", false) /* the tick waits for a lock */ \
	STATE(WORKER_WAITING_FOR_STANDBY, "waiting for synchronous standby", false) /* the commit waits */

#define WORKER_STATE_ENUM_NAME(name, words, writing) name,

typedef enum WorkerState
{
	WORKER_STATES(WORKER_STATE_ENUM_NAME)
} WorkerState;

/* The state's words, as the view shows them. */
extern const char *worker_state_name(WorkerState state);

/* Whether the worker writes heartbeats in this state (alive_worker_up). */
extern bool worker_state_writing(WorkerState state);

#endif							/* ALIVE_WORKER_WORKER_STATES_H */
