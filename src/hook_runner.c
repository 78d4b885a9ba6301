/*
 * hook_runner.c
 *		Running alive_worker.hook in its own subtransaction, and saying why it
 *		must end.
 *
 * A hook is code the operator chose, run after the heartbeat's INSERT in the
 * hook host, a process of its own (alive_worker/_hook_client.py).  It must
 * not be able to hang shutdown, outlive the tick timeout, or turn one
 * failure into a crash: the worker ends the host when the worker must stop
 * (aw_hook_wait_cause in the bridge), and an ERROR rolls back the hook's
 * subtransaction alone unless hook_failure says the whole tick fails.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/prepare.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/resowner.h"

#include "alive_worker/_bridge.h"
#include "error_throttle.h"
#include "hook_runner.h"
#include "python_loader.h"
#include "schedule.h"
#include "settings.h"
#include "tick_timeout.h"
#include "worker_status.h"

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

/* Names the hook and the tick in every message the hook causes. */
static void
describe_hook(void *arg)
{
	errcontext("alive_worker.hook = \"%s\", tick %lld",
			   tick_hook, (long long) *(const int64 *) arg);
}

/*
 * The hook's statements run in the worker's own session, which writes every
 * later heartbeat: whatever session state they leave behind is undone when
 * the hook is over, however it ended (a failed hook's rollback undoes
 * settings, cursors and temporary tables, but not advisory locks or
 * prepared statements).  As PostgreSQL does for the index functions that
 * REFRESH MATERIALIZED VIEW runs: every setting the hook changed, of every
 * kind (role and session_authorization, TimeZone, default_transaction_*,
 * synchronous_commit, a custom one) goes back to its value before the hook
 * (guc_nest_level is from before it).  The worker holds no advisory lock,
 * prepared statement, cursor or temporary table of its own, so every one
 * left now is the hook's: a session-level advisory lock would otherwise be
 * held for ever against other sessions, the rest would pile up tick after
 * tick.
 */
typedef struct SessionBeforeHook
{
	int			guc_nest_level;
	Oid			session_user;
	Oid			user;
	int			sec_context;
} SessionBeforeHook;

static void
undo_hook_session_state(const SessionBeforeHook *before)
{
	AtEOXact_GUC(false, before->guc_nest_level);

	/*
	 * SET SESSION AUTHORIZATION's setting is put back above, but not always
	 * the user it made the session's: the worker's own, whatever the
	 * settings say now.
	 */
	if (GetSessionUserId() != before->session_user)
		SetSessionAuthorization(before->session_user, superuser_arg(before->session_user));
	SetUserIdAndSecContext(before->user, before->sec_context);
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
	/* Its holdable cursors, and any other it left open (CLOSE ALL). */
	PortalHashTableDeleteAll();
	/* Its temporary tables (DISCARD TEMP); nothing without a temporary schema. */
	ResetTempTableNamespace();
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
 * While the hook host runs the hook, the worker waits for it in short polls
 * and ends the host on SIGTERM, the tick timeout, a cancel request or
 * postmaster death; the tick then fails with QueryCanceled.
 */
void
run_hook(int64 tick_number, int timeout_ms, const volatile sig_atomic_t *stop_requested)
{
	MemoryContext tick_context = CurrentMemoryContext;
	ResourceOwner tick_owner = CurrentResourceOwner;
	int			tick_level = GetCurrentTransactionNestLevel();
	ErrorContextCallback context;
	int64		started_us = monotonic_us();
	ErrorData  *edata = NULL;
	SessionBeforeHook before;

	context.callback = describe_hook;
	context.arg = &tick_number;
	context.previous = error_context_stack;
	error_context_stack = &context;

	before.session_user = GetSessionUserId();
	GetUserIdAndSecContext(&before.user, &before.sec_context);
	before.guc_nest_level = NewGUCNestLevel();
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(tick_context);
	PG_TRY();
	{
		int			result;
		int			cause;

		/* alive_worker.workers says "in the hook" meanwhile. */
		worker_status_in_hook(true);
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
					 errmsg("alive_worker.hook returned normally after %s ended it",
							hook_interrupt_cause_name(cause)),
					 errdetail("What it did in this tick is rolled back.")));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(tick_context);
		CurrentResourceOwner = tick_owner;
	}
	PG_CATCH();
	{
		(void) embedded_python.hook_end();
		MemoryContextSwitchTo(tick_context);
		tick_timeout_explain_current_error(timeout_ms);
		edata = CopyErrorData();
		FlushErrorState();
		/* Explicit subtransactions the hook left open go with its own. */
		while (GetCurrentTransactionNestLevel() > tick_level)
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(tick_context);
		CurrentResourceOwner = tick_owner;
	}
	PG_END_TRY();
	worker_status_in_hook(false);
	error_context_stack = context.previous;
	undo_hook_session_state(&before);

	worker_status_hook_end(monotonic_us() - started_us,
						   edata ? (edata->message ? edata->message : "") : NULL);
	if (edata == NULL)
	{
		error_throttle_succeeded(&hook_errors);
		return;
	}
	if (hook_failure == HOOK_FAILURE_FAIL_TICK || *stop_requested)
		ReThrowError(edata);
	if (error_throttle_failed(&hook_errors, edata))
	{
		/* A WARNING: the tick goes on, and the heartbeat commits. */
		edata->elevel = WARNING;
		ThrowErrorData(edata);
	}
	FreeErrorData(edata);
}
