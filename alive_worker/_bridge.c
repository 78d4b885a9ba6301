/*
 * _bridge.c
 *		The SPI bridge: every call the embedded Python makes into PostgreSQL.
 *
 * A PostgreSQL ERROR is a longjmp.  Python frames must never be unwound that
 * way, so every entry point here runs its work through run_guarded(), which
 * catches the ERROR, leaves the transaction in a defined state and records
 * the error for Python to raise as alive_worker.spi.SPIError.  This is the
 * discipline of src/pl/plpython, kept in one function.
 *
 * Outside an explicit subtransaction a statement runs without one, because a
 * heartbeat tick is a single unit: if its statement fails, the whole tick is
 * rolled back.  The bridge then marks the transaction failed and refuses
 * further statements until the C shim aborts it.  Inside an explicit
 * subtransaction (spi.subtransaction() in Python) each statement gets its own
 * internal subtransaction, rolled back at once on error, so Python may catch
 * the error and go on, as in PL/Python.
 *
 * This file holds the guard, the errors it records, explicit
 * subtransactions, settings and logging, and what the shim calls (the
 * SHIM CALLS of _bridge.h);
 * _bridge_statements.c the statements.  Both are compiled into the cffi
 * embedding library, so postgres.h comes first, and no Python header is
 * included.
 */
#include "postgres.h"

#include "_compat.h"			/* what differs between majors */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"


#include "_bridge.h"
#include "_bridge_guard.h"
#include "_gil.h"



/* What Python left open: the saved state of each explicit subtransaction. */
#define MAX_SUBTRANSACTION_DEPTH 32
typedef struct SavedState
{
	MemoryContext context;
	ResourceOwner owner;
} SavedState;

static SavedState subtransaction_stack[MAX_SUBTRANSACTION_DEPTH];
static int	subtransaction_depth = 0;

/* An ERROR was caught outside any subtransaction: only rollback remains. */
static bool transaction_failed = false;
static char failure_cause[512];

/*
 * The last error, in malloc'd strings so that recording it cannot fail.  One
 * per thread: a hook's threads record their refusals here while the worker's
 * thread records its own errors, so neither frees the other's strings.
 */
static __thread aw_error last_error;
static __thread bool error_recorded = false;


/* From the shim, at start: the flags that say why a hook must stop. */
static aw_worker_flags worker_flags;
/* The cause aw_hook_wait_cause last returned in this hook call. */
static int	host_cause = AW_CAUSE_NONE;


static char *
copy_or_null(const char *text)
{
	return text ? strdup(text) : NULL;
}

static void
forget_error(void)
{
	free((void *) last_error.message);
	free((void *) last_error.detail);
	free((void *) last_error.hint);
	free((void *) last_error.context);
	memset(&last_error, 0, sizeof(last_error));
	error_recorded = false;
}

/*
 * Records an error raised by Python (or a refused call) for the shim to
 * report.  Called from Python too, so it touches nothing that can ERROR.
 */
void
aw_record_error(const char *sqlstate, const char *message, const char *detail,
				const char *hint, const char *context)
{
	forget_error();
	strlcpy(last_error.sqlstate, sqlstate ? sqlstate : SQLSTATE_INTERNAL_ERROR,
			sizeof(last_error.sqlstate));
	last_error.message = copy_or_null(message ? message : "unknown error");
	last_error.detail = copy_or_null(detail);
	last_error.hint = copy_or_null(hint);
	last_error.context = copy_or_null(context);
	error_recorded = true;
}

const aw_error *
aw_last_error(void)
{
	return error_recorded ? &last_error : NULL;
}

static void
record_error_data(ErrorData *edata)
{
	aw_record_error(unpack_sql_state(edata->sqlerrcode), edata->message,
					edata->detail, edata->hint, edata->context);
}

/*
 * PostgreSQL runs on the worker's one thread.  A thread that a hook starts
 * may run Python while the worker sleeps, or while it waits in a bridge call
 * (cffi releases the GIL there), so the bridge refuses to run PostgreSQL
 * code for any other thread.  The library is loaded by the worker's thread,
 * which runs this constructor.
 */
static pthread_t worker_thread;

static void remember_worker_thread(void) __attribute__((constructor));

static void
remember_worker_thread(void)
{
	worker_thread = pthread_self();
}

bool
on_worker_thread(void)
{
	return pthread_equal(pthread_self(), worker_thread);
}

int
refuse_other_thread(void)
{
	aw_record_error(SQLSTATE_FEATURE_NOT_SUPPORTED,
					"alive_worker.spi was called from a thread other than the worker's",
					"PostgreSQL is single-threaded: only the worker's own thread may run statements.",
					"Call spi from the hook itself, not from threads it starts.",
					NULL);
	return AW_ERROR;
}

int
run_guarded(GuardMode mode, void (*body) (void *), void *arg)
{
	MemoryContext caller_context;
	ResourceOwner caller_owner;
	bool		own_subtransaction;
	volatile bool subtransaction_started = false;
	volatile int result = AW_OK;
	int			gil;

	/* Before anything else: nothing of PostgreSQL's is read off-thread. */
	if (!on_worker_thread())
		return refuse_other_thread();
	caller_context = CurrentMemoryContext;
	caller_owner = CurrentResourceOwner;
	own_subtransaction = (mode == GUARD_STATEMENT && subtransaction_depth > 0);
	if (mode != GUARD_ANY_STATE && transaction_failed)
	{
		char		message[sizeof(failure_cause) + 128];

		snprintf(message, sizeof(message),
				 "current heartbeat transaction is aborted by an earlier error (%s), statements ignored until the tick ends",
				 failure_cause);
		aw_record_error(SQLSTATE_IN_FAILED_SQL_TRANSACTION, message, NULL,
						"Run statements whose errors you catch inside spi.subtransaction().",
						NULL);
		return AW_ERROR;
	}

	/* See _gil.c: the GIL for PL/Python. */
	gil = aw_gil_take();
	PG_TRY();
	{
		if (own_subtransaction)
		{
			BeginInternalSubTransaction(NULL);
			subtransaction_started = true;
			MemoryContextSwitchTo(caller_context);
		}
		body(arg);
		if (own_subtransaction)
		{
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(caller_context);
			CurrentResourceOwner = caller_owner;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();

		if (subtransaction_started)
		{
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(caller_context);
			CurrentResourceOwner = caller_owner;
		}
		else if (mode != GUARD_ANY_STATE)
		{
			/*
			 * Nothing but an abort may touch this transaction now.  Release
			 * LWLocks at once, as AbortTransaction would first thing, since
			 * Python runs a little longer before the shim gets to abort.
			 */
			transaction_failed = true;
			strlcpy(failure_cause, edata->message ? edata->message : "unknown",
					sizeof(failure_cause));
			LWLockReleaseAll();
		}
		/* SPI frees its rows when the statement fails. */
		forget_result_rows();

		record_error_data(edata);
		FreeErrorData(edata);
		result = AW_ERROR;
	}
	PG_END_TRY();
	aw_gil_give(gil);

	return result;
}

/* ---- names, settings, logging ---- */

typedef struct StringArgs
{
	const char *input;
	const char **output;
} StringArgs;

static void
quote_body(void *arg)
{
	StringArgs *args = arg;

	/* quote_identifier may return its input, which Python frees on return. */
	*args->output = pstrdup(quote_identifier(args->input));
}

int
aw_quote_identifier(const char *name, const char **quoted_out)
{
	StringArgs	args = {name, quoted_out};

	return run_guarded(GUARD_CONTROL, quote_body, &args);
}

static void
current_role_body(void *arg)
{
	StringArgs *args = arg;

	*args->output = GetUserNameFromId(GetUserId(), false);
}

int
aw_current_role(const char **name_out)
{
	StringArgs	args = {NULL, name_out};

	return run_guarded(GUARD_CONTROL, current_role_body, &args);
}

static void
setting_body(void *arg)
{
	StringArgs *args = arg;

	*args->output = GetConfigOption(args->input, true, false);
}

int
aw_setting(const char *name, const char **value_out)
{
	StringArgs	args = {name, value_out};

	*value_out = NULL;
	/* As logging: reading a setting is fine in a failed transaction. */
	return run_guarded(GUARD_ANY_STATE, setting_body, &args);
}

static int
elevel_for(int level)
{
	switch (level)
	{
		case AW_LOG_DEBUG:
			return DEBUG1;
		case AW_LOG_LOG:
			return LOG;
		default:
			return WARNING;
	}
}

typedef struct LogArgs
{
	int			elevel;
	const char *message;
} LogArgs;

static void
log_body(void *arg)
{
	LogArgs    *args = arg;

	ereport(args->elevel, (errmsg_internal("%s", args->message)));
}

int
aw_log(int level, const char *message)
{
	LogArgs		args = {elevel_for(level), message};

	return run_guarded(GUARD_ANY_STATE, log_body, &args);
}

int
aw_log_enabled(int level)
{
	if (!on_worker_thread())
		return 0;
	return message_level_is_interesting(elevel_for(level));
}

/* ---- explicit subtransactions ---- */

static void
subtransaction_begin_body(void *arg)
{
	SavedState *saved;

	if (subtransaction_depth >= MAX_SUBTRANSACTION_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("alive_worker subtransactions nested deeper than %d",
						MAX_SUBTRANSACTION_DEPTH)));
	saved = &subtransaction_stack[subtransaction_depth];
	saved->context = CurrentMemoryContext;
	saved->owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(saved->context);
	subtransaction_depth++;
}

int
aw_subtransaction_begin(void)
{
	return run_guarded(GUARD_CONTROL, subtransaction_begin_body, NULL);
}

static void
subtransaction_end_body(void *arg)
{
	bool		commit = *(bool *) arg;
	SavedState *saved;

	if (subtransaction_depth == 0)
		elog(ERROR, "alive_worker has no subtransaction to end");
	saved = &subtransaction_stack[--subtransaction_depth];
	if (commit)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(saved->context);
	CurrentResourceOwner = saved->owner;
}

int
aw_subtransaction_end(int commit)
{
	bool		commit_flag = commit != 0;

	return run_guarded(GUARD_CONTROL, subtransaction_end_body, &commit_flag);
}

/* ---- ending a hook (the worker ends the hook host: _hook_client.py) ---- */

void
aw_bridge_start(const aw_worker_flags *flags)
{
	worker_flags = *flags;
}

/*
 * Asked by the worker between its short waits for the hook host
 * (alive_worker/_hook_client.py): why the hook must end now, if it must.  A
 * cause returned is kept for aw_hook_end, which clears the cancel flag.
 */
int
aw_hook_wait_cause(void)
{
	int			cause = AW_CAUSE_NONE;

	if (!on_worker_thread())
		return AW_CAUSE_NONE;
	/*
	 * Only flags that signal handlers set, in this order: SIGTERM's handler
	 * and the tick timeout's set QueryCancelPending too.
	 */
	if (!PostmasterIsAlive())
		cause = AW_CAUSE_POSTMASTER_DEATH;
	else if (worker_flags.stop_requested != NULL && *worker_flags.stop_requested)
		cause = AW_CAUSE_STOP;
	else if (worker_flags.timeout_fired != NULL && *worker_flags.timeout_fired)
		cause = AW_CAUSE_TIMEOUT;
	else if (QueryCancelPending)
		cause = AW_CAUSE_CANCEL;
	if (cause != AW_CAUSE_NONE)
		host_cause = cause;
	return cause;
}

int
aw_hook_end(void)
{
	int			cause;

	if (!on_worker_thread())
		return AW_CAUSE_NONE;
	cause = host_cause;
	host_cause = AW_CAUSE_NONE;

	/*
	 * The hook was the statement that a cancel request or the tick timeout
	 * cancelled: it has been told, so the flag must not cancel what follows
	 * in this tick or the next.  SIGTERM ends the tick anyway (the shim
	 * rolls it back), and got_sigterm stays.
	 */
	if (cause != AW_CAUSE_NONE)
		QueryCancelPending = false;
	return cause;
}

/* ---- called by the shim ---- */

void
aw_finish_python_call(int result, int elevel)
{
	char		sqlstate[6];
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *context;
	bool		failed = result == AW_ERROR || transaction_failed;
	bool		left_open = subtransaction_depth > 0;

	/* The shim's abort ends whatever Python left open. */
	subtransaction_depth = 0;
	transaction_failed = false;
	forget_result_rows();

	/* An error Python caught inside a subtransaction is history. */
	if (!failed && !left_open)
	{
		forget_error();
		return;
	}
	if (!error_recorded)
		aw_record_error(SQLSTATE_INTERNAL_ERROR,
						left_open ? "alive_worker Python code left a subtransaction open"
						: "alive_worker Python code failed without an error",
						NULL, "Use spi.subtransaction() as a context manager.",
						NULL);

	/* Copy into palloc'd memory: ereport does not return here. */
	memcpy(sqlstate, last_error.sqlstate, sizeof(sqlstate));
	message = pstrdup(last_error.message);
	detail = last_error.detail ? pstrdup(last_error.detail) : NULL;
	hint = last_error.hint ? pstrdup(last_error.hint) : NULL;
	context = last_error.context ? pstrdup(last_error.context) : NULL;
	forget_error();

	ereport(elevel,
			(errcode(MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
								   sqlstate[3], sqlstate[4])),
			 errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0,
			 context ? errcontext("%s", context) : 0));
}
