/*
 * hook_runner.c
 *		Running alive_worker.hook in its own subtransaction, and carrying
 *		interrupts into it.
 *
 * A hook is code the operator chose, run by the worker after the heartbeat's
 * INSERT.  It must not be able to hang shutdown, outlive the tick timeout, or
 * turn one failure into a crash: the bridge's watchdog raises an exception in
 * it when the worker must stop (alive_worker/_interrupts.c), and an ERROR
 * rolls back the hook's subtransaction alone unless hook_failure says the
 * whole tick fails.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "alive_worker/_bridge.h"
#include "alive_worker.h"
#include "error_throttle.h"
#include "hook_runner.h"
#include "python_loader.h"
#include "schedule.h"
#include "settings.h"
#include "tick_timeout.h"
#include "worker_status.h"

/*
 * Why a running hook must stop, for the bridge's watchdog (see
 * alive_worker/_interrupts.c).  Called on the watchdog's thread while a hook
 * runs: it only reads flags that signal handlers set.  SIGTERM's handler and
 * the tick timeout's set QueryCancelPending too, so the order matters.
 */
static int
hook_interrupt_cause(void)
{
	if (got_sigterm)
		return AW_CAUSE_STOP;
	if (tick_timeout_fired())
		return AW_CAUSE_TIMEOUT;
	if (QueryCancelPending)
		return AW_CAUSE_CANCEL;
	return AW_CAUSE_NONE;
}

static const char *
hook_interrupt_cause_name(int cause)
{
	switch (cause)
	{
		case AW_CAUSE_CANCEL:
			return "a cancel request";
		case AW_CAUSE_TIMEOUT:
			return "alive_worker.tick_timeout";
		case AW_CAUSE_STOP:
			return "SIGTERM";
		case AW_CAUSE_POSTMASTER_DEATH:
			return "the postmaster's death";
	}
	return "an interrupt";
}

/*
 * A hook went on for AW_INTERRUPT_GRACE_MS after it was interrupted
 * (it caught alive_worker.hooks.Interrupted).  Called by the bridge on the
 * worker's thread, between two bytecodes, never inside PostgreSQL code that
 * holds interrupts: exits as a backend terminated mid-query does, through
 * proc_exit, whose callbacks abort the transaction.  Not a crash: the crash
 * guard does not count it, and the cluster is not reset.
 */
static void
end_worker_for_hook(int cause)
{
	if (cause == AW_CAUSE_POSTMASTER_DEATH)
		proc_exit(1);
	if (cause == AW_CAUSE_STOP)
	{
		ereport(WARNING,
				(errmsg("alive_worker.hook = \"%s\" kept running %d ms after SIGTERM",
						tick_hook, AW_INTERRUPT_GRACE_MS),
				 errdetail("The hook caught alive_worker.hooks.Interrupted instead of returning; the worker exits now and its tick is rolled back.")));
		worker_stop();
	}
	ereport(FATAL,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("alive_worker.hook = \"%s\" kept running %d ms after it was interrupted by %s",
					tick_hook, AW_INTERRUPT_GRACE_MS, hook_interrupt_cause_name(cause)),
			 errdetail("The hook caught alive_worker.hooks.Interrupted instead of returning, so the worker exits; it is started again in %d s.",
					   WORKER_RESTART_DELAY_SECONDS),
			 errhint("Let alive_worker.hooks.Interrupted propagate out of the hook.")));
}

void
hook_runner_init(void)
{
	embedded_python.set_interrupt_sources(hook_interrupt_cause, end_worker_for_hook);
}

/* Names the hook and the tick in every message the hook causes. */
static void
describe_hook(void *arg)
{
	errcontext("alive_worker.hook = \"%s\", tick %lld",
			   tick_hook, (long long) (ticks_written + 1));
}

/*
 * Runs alive_worker.hook after the heartbeat's INSERT, in a subtransaction
 * of its own.  By default a hook that fails (an ERROR, an exception, an
 * import that fails, the tick timeout, a cancel request) is rolled back
 * alone, logged (throttled, in full with its traceback the first time) and
 * counted, and the heartbeat commits: a broken hook does not make a healthy
 * server look dead.  With alive_worker.hook_failure = fail_tick, and on
 * SIGTERM, the hook's error fails the whole tick instead.
 *
 * While Python runs the hook, the bridge's watchdog carries SIGTERM, the
 * tick timeout, cancel requests and postmaster death into it as an
 * exception (alive_worker/_interrupts.c).
 */
void
run_hook(void)
{
	MemoryContext tick_context = CurrentMemoryContext;
	ResourceOwner tick_owner = CurrentResourceOwner;
	int			tick_level = GetCurrentTransactionNestLevel();
	ErrorContextCallback context;
	int64		started_us = monotonic_us();
	ErrorData  *edata = NULL;

	context.callback = describe_hook;
	context.arg = NULL;
	context.previous = error_context_stack;
	error_context_stack = &context;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(tick_context);
	PG_TRY();
	{
		int			result;
		int			cause;

		embedded_python.hook_begin();
		result = embedded_python.hook();
		cause = embedded_python.hook_end();
		embedded_python.finish_call(result, ERROR);
		if (result != AW_OK)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("alive_worker hook failed without reporting why"),
					 errhint("Python's own message, if any, is in the server's standard error.")));
		if (cause != AW_CAUSE_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("alive_worker.hook returned normally after it was interrupted by %s",
							hook_interrupt_cause_name(cause)),
					 errdetail("The hook caught alive_worker.hooks.Interrupted; what it did in this tick is rolled back.")));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(tick_context);
		CurrentResourceOwner = tick_owner;
	}
	PG_CATCH();
	{
		(void) embedded_python.hook_end();
		MemoryContextSwitchTo(tick_context);
		tick_timeout_explain_current_error(tick_timeout_in_force_ms());
		edata = CopyErrorData();
		FlushErrorState();
		/* Explicit subtransactions the hook left open go with its own. */
		while (GetCurrentTransactionNestLevel() > tick_level)
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(tick_context);
		CurrentResourceOwner = tick_owner;
	}
	PG_END_TRY();
	error_context_stack = context.previous;

	worker_status_hook_end(worker_index, monotonic_us() - started_us,
						   edata ? (edata->message ? edata->message : "") : NULL);
	if (edata == NULL)
	{
		error_throttle_succeeded(&hook_errors);
		return;
	}
	if (hook_failure == HOOK_FAILURE_FAIL_TICK || got_sigterm)
		ReThrowError(edata);
	if (error_throttle_failed(&hook_errors, edata))
	{
		/* A WARNING: the tick goes on, and the heartbeat commits. */
		edata->elevel = WARNING;
		ThrowErrorData(edata);
	}
	FreeErrorData(edata);
}
