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
 * This file is compiled into the cffi embedding library, so postgres.h comes
 * first, and no Python header is included.
 */
#include "postgres.h"

#include "_compat.h"			/* what differs between majors */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "_bridge.h"
#include "_table_owner.h"

struct aw_plan
{
	MemoryContext context;		/* holds this struct and its arrays */
	SPIPlanPtr	plan;
	int			nargs;
	FmgrInfo   *input_functions;
	Oid		   *input_params;
	/* A statement on this table runs as its owner; NULL for any other */
	RangeVar   *owner_of;
	AclMode		required_privileges;	/* of the worker's role, on owner_of */
};

StaticAssertDecl(AW_PRIVILEGE_INSERT == ACL_INSERT &&
				 AW_PRIVILEGE_SELECT == ACL_SELECT &&
				 AW_PRIVILEGE_DELETE == ACL_DELETE,
				 "the bridge's privilege bits are PostgreSQL's");

/* How run_guarded treats the transaction around the work it runs. */
typedef enum GuardMode
{
	GUARD_STATEMENT,			/* refuse if failed; own subxact when nested */
	GUARD_CONTROL,				/* refuse if failed; no subxact of its own */
	GUARD_LOG					/* always runs; an error changes nothing */
} GuardMode;

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

/* The last error, in malloc'd strings so that recording it cannot fail. */
static aw_error last_error;
static bool error_recorded = false;

/* Rows of the last statement, owned by SPI, and how many it processed. */
static SPITupleTable *result_rows = NULL;
static long rows_processed = 0;

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
	strlcpy(last_error.sqlstate, sqlstate ? sqlstate : "XX000",
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
 * Runs body(arg), catching any ERROR it raises.  Returns AW_OK, or AW_ERROR
 * with the error recorded and the transaction left as the mode says.
 */
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

static bool
on_worker_thread(void)
{
	return pthread_equal(pthread_self(), worker_thread);
}

static int
refuse_other_thread(void)
{
	aw_record_error("0A000",
					"alive_worker.spi was called from a thread other than the worker's",
					"PostgreSQL is single-threaded: only the worker's own thread may run statements.",
					"Call spi from the hook itself, not from threads it starts.",
					NULL);
	return AW_ERROR;
}

static int
run_guarded(GuardMode mode, void (*body) (void *), void *arg)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;
	bool		own_subtransaction = (mode == GUARD_STATEMENT &&
									  subtransaction_depth > 0);
	volatile bool subtransaction_started = false;
	volatile int result = AW_OK;

	if (!on_worker_thread())
		return refuse_other_thread();
	if (mode != GUARD_LOG && transaction_failed)
	{
		char		message[sizeof(failure_cause) + 128];

		snprintf(message, sizeof(message),
				 "current heartbeat transaction is aborted by an earlier error (%s), statements ignored until the tick ends",
				 failure_cause);
		aw_record_error("25P02", message, NULL,
						"Run statements whose errors you catch inside spi.subtransaction().",
						NULL);
		return AW_ERROR;
	}

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
		else if (mode != GUARD_LOG)
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
		result_rows = NULL;

		record_error_data(edata);
		FreeErrorData(edata);
		result = AW_ERROR;
	}
	PG_END_TRY();

	return result;
}

/* ---- statements on a table, as its owner ---- */

/*
 * The worker may run as a superuser, and a table's triggers, defaults, rules,
 * policies, index expressions and column types are code that the table's
 * owner chose, and may have written.  Whoever owns the table, that code must
 * never run with more rights than the owner's.  So a statement the worker
 * runs on its own behalf on a table (the heartbeat's INSERT, retention's
 * DELETE) runs as the table's owner, inside a security-restricted operation,
 * with its setting changes undone and search_path pinned: what PostgreSQL
 * itself does for autovacuum, ANALYZE and REFRESH MATERIALIZED VIEW (see
 * ExecRefreshMatView).  The worker's role must still hold the privileges the
 * statement needs, as if it ran the statement itself, so that granting and
 * revoking them keeps its meaning.
 *
 * The owner is looked up at every execution, not once: the table may have
 * been dropped and made again by another role since the plan was made (a
 * kept plan then follows the name to the new table).  The lookup locks the
 * table by name first, as the statement will, and PostgreSQL resolves the
 * statement's name against the same catalog state: an invalidation that
 * could point the name elsewhere is processed only when a new lock is taken,
 * and none is between this lookup and the statement's own.
 */
typedef struct TableOwnerRun
{
	const RangeVar *table;
	AclMode		privileges;
	void		(*body) (void *);
	void	   *arg;
} TableOwnerRun;

static void
privilege_names(AclMode privileges, StringInfo names)
{
	static const struct
	{
		AclMode		bit;
		const char *name;
	}			known[] = {{ACL_INSERT, "INSERT"}, {ACL_SELECT, "SELECT"}, {ACL_DELETE, "DELETE"}};

	for (size_t i = 0; i < lengthof(known); i++)
	{
		if ((privileges & known[i].bit) == 0)
			continue;
		if (names->len > 0)
			appendStringInfoString(names, ", ");
		appendStringInfoString(names, known[i].name);
	}
}

/*
 * Locks the table, checks that it is one, and that the worker's role holds
 * privileges on it (none: only at execution, so that a plan can be made
 * before a grant); returns its owner.
 */
static Oid
lock_table_for_owner_run(const RangeVar *table, AclMode privileges)
{
	Oid			relid = RangeVarGetRelidExtended(table, RowExclusiveLock, 0, NULL, NULL);
	Relation	relation = relation_open(relid, NoLock);
	char		relkind = relation->rd_rel->relkind;
	Oid			owner = relation->rd_rel->relowner;
	Oid			worker_role = GetUserId();
	AclMode		missing;

	relation_close(relation, NoLock);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("alive_worker table %s is %s, not a table",
						quote_qualified_identifier(table->schemaname, table->relname),
						relkind_name(relkind)),
				 errdetail("The worker writes only into ordinary or partitioned tables.")));
	missing = privileges & ~pg_class_aclmask(relid, worker_role, privileges, ACLMASK_ALL);
	if (missing != 0)
	{
		StringInfoData names;

		initStringInfo(&names);
		privilege_names(missing, &names);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied: role \"%s\" lacks %s on table %s",
						GetUserNameFromId(worker_role, false), names.data,
						quote_qualified_identifier(table->schemaname, table->relname)),
				 errhint("GRANT %s ON %s TO %s;", names.data,
						 quote_qualified_identifier(table->schemaname, table->relname),
						 quote_identifier(GetUserNameFromId(worker_role, false)))));
	}
	return owner;
}

static void
run_as_table_owner(TableOwnerRun *run)
{
	Oid			owner = lock_table_for_owner_run(run->table, run->privileges);
	TableOwnerState state;

	table_owner_begin(owner, &state);
	PG_TRY();
	{
		run->body(run->arg);
	}
	PG_CATCH();
	{
		/* Python runs again before the abort that would give the user back. */
		table_owner_restore_user(&state);
		PG_RE_THROW();
	}
	PG_END_TRY();
	table_owner_end(&state);
}

/* ---- statements ---- */

typedef struct PrepareArgs
{
	const char *query;
	int			nargs;
	const char *const *argtypes;
	bool		keep;
	const char *owner_of_schema;	/* NULL unless as the table's owner */
	const char *owner_of_table;
	AclMode		privileges;
	aw_plan   **plan_out;
} PrepareArgs;

typedef struct SPIPrepareArgs
{
	aw_plan    *plan;
	const char *query;
	Oid		   *types;
} SPIPrepareArgs;

static void
spi_prepare_body(void *arg)
{
	SPIPrepareArgs *args = arg;

	args->plan->plan = SPI_prepare(args->query, args->plan->nargs, args->types);
}

static void
prepare_body(void *arg)
{
	PrepareArgs *args = arg;
	MemoryContext plan_context;
	MemoryContext old_context;
	aw_plan    *plan;
	Oid		   *types;

	plan_context = AllocSetContextCreate(TopMemoryContext,
										 "alive_worker plan",
										 ALLOCSET_SMALL_SIZES);
	old_context = MemoryContextSwitchTo(plan_context);
	plan = palloc0(sizeof(aw_plan));
	plan->context = plan_context;
	plan->nargs = args->nargs;
	types = palloc0(sizeof(Oid) * Max(args->nargs, 1));
	plan->input_functions = palloc0(sizeof(FmgrInfo) * Max(args->nargs, 1));
	plan->input_params = palloc0(sizeof(Oid) * Max(args->nargs, 1));
	if (args->owner_of_table != NULL)
	{
		plan->owner_of = makeRangeVar(pstrdup(args->owner_of_schema),
									  pstrdup(args->owner_of_table), -1);
		plan->required_privileges = args->privileges;
	}
	MemoryContextSwitchTo(old_context);

	PG_TRY();
	{
		SPIPrepareArgs prepare = {plan, args->query, types};

		for (int i = 0; i < args->nargs; i++)
		{
			Oid			input_function;

			types[i] = DatumGetObjectId(DirectFunctionCall1(regtypein,
															CStringGetDatum(args->argtypes[i])));
			getTypeInputInfo(types[i], &input_function, &plan->input_params[i]);
			fmgr_info_cxt(input_function, &plan->input_functions[i], plan_context);
		}

		/* Parsing resolves the table's name: as its owner too. */
		if (plan->owner_of != NULL)
		{
			TableOwnerRun run = {plan->owner_of, 0, spi_prepare_body, &prepare};

			run_as_table_owner(&run);
		}
		else
			spi_prepare_body(&prepare);
		if (plan->plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		if (args->keep && SPI_keepplan(plan->plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
	}
	PG_CATCH();
	{
		MemoryContextDelete(plan_context);
		PG_RE_THROW();
	}
	PG_END_TRY();

	*args->plan_out = plan;
}

int
aw_prepare(const char *query, int nargs, const char *const *argtypes,
		   int keep, aw_plan **plan_out)
{
	PrepareArgs args = {query, nargs, argtypes, keep != 0, NULL, NULL, 0, plan_out};

	*plan_out = NULL;
	return run_guarded(GUARD_STATEMENT, prepare_body, &args);
}

int
aw_prepare_as_owner(const char *query, int nargs, const char *const *argtypes,
					int keep, const char *schema, const char *table,
					int privileges, aw_plan **plan_out)
{
	PrepareArgs args = {query, nargs, argtypes, keep != 0, schema, table,
	(AclMode) privileges, plan_out};

	*plan_out = NULL;
	return run_guarded(GUARD_STATEMENT, prepare_body, &args);
}

void
aw_free_plan(aw_plan *plan)
{
	/* From another thread, the plan is left for the worker's exit. */
	if (plan == NULL || !on_worker_thread())
		return;
	if (plan->plan != NULL)
		SPI_freeplan(plan->plan);
	MemoryContextDelete(plan->context);
}

typedef struct ExecuteArgs
{
	aw_plan    *plan;
	const char *const *values;
	long	   *rows_out;
} ExecuteArgs;

typedef struct SPIExecuteArgs
{
	SPIPlanPtr	plan;
	Datum	   *datums;
	const char *nulls;
	int			rc;
} SPIExecuteArgs;

static void
spi_execute_body(void *arg)
{
	SPIExecuteArgs *args = arg;

	args->rc = SPI_execute_plan(args->plan, args->datums, args->nulls, false, 0);
}

#define MAX_STACK_ARGS 8

static void
execute_body(void *arg)
{
	ExecuteArgs *args = arg;
	aw_plan    *plan = args->plan;
	Datum		stack_datums[MAX_STACK_ARGS];
	char		stack_nulls[MAX_STACK_ARGS];
	Datum	   *datums = stack_datums;
	char	   *nulls = stack_nulls;
	int			rc;

	if (plan->nargs > MAX_STACK_ARGS)
	{
		datums = palloc(sizeof(Datum) * plan->nargs);
		nulls = palloc(plan->nargs);
	}
	for (int i = 0; i < plan->nargs; i++)
	{
		const char *value = args->values[i];

		nulls[i] = value ? ' ' : 'n';
		datums[i] = InputFunctionCall(&plan->input_functions[i],
									  (char *) value,
									  plan->input_params[i], -1);
	}

	if (result_rows != NULL)
	{
		SPI_freetuptable(result_rows);
		result_rows = NULL;
	}
	{
		SPIExecuteArgs execute = {plan->plan, datums, nulls, 0};

		if (plan->owner_of != NULL)
		{
			TableOwnerRun run = {plan->owner_of, plan->required_privileges,
			spi_execute_body, &execute};

			run_as_table_owner(&run);
		}
		else
			spi_execute_body(&execute);
		rc = execute.rc;
	}
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	result_rows = SPI_tuptable;
	rows_processed = (long) SPI_processed;
	*args->rows_out = result_rows ? rows_processed : -1;
}

/* Python keeps the handle of a plan it freed as NULL. */
static int
refuse_freed_plan(void)
{
	aw_record_error("26000", "alive_worker plan was freed and cannot be executed",
					NULL, NULL, NULL);
	return AW_ERROR;
}

int
aw_execute(aw_plan *plan, const char *const *values, long *rows_out)
{
	ExecuteArgs args = {plan, values, rows_out};

	*rows_out = 0;
	if (plan == NULL)
		return refuse_freed_plan();
	return run_guarded(GUARD_STATEMENT, execute_body, &args);
}

int
aw_execute_text(aw_plan *plan, const char *value, long *rows_out)
{
	const char *values[1] = {value};
	ExecuteArgs args = {plan, values, rows_out};

	*rows_out = 0;
	if (plan == NULL)
		return refuse_freed_plan();
	if (plan->nargs != 1)
	{
		aw_record_error("XX000", "alive_worker aw_execute_text needs a plan of one parameter",
						NULL, NULL, NULL);
		return AW_ERROR;
	}
	return run_guarded(GUARD_STATEMENT, execute_body, &args);
}

long
aw_rows_processed(void)
{
	return rows_processed;
}

int
aw_result_columns(void)
{
	return result_rows ? result_rows->tupdesc->natts : -1;
}

typedef struct ValueArgs
{
	long		row;
	int			column;
	const char **value_out;
} ValueArgs;

static void
value_body(void *arg)
{
	ValueArgs  *args = arg;

	if (result_rows == NULL || args->row < 0 ||
		(uint64) args->row >= result_rows->numvals ||
		args->column < 0 || args->column >= result_rows->tupdesc->natts)
		elog(ERROR, "no result value at row %ld, column %d",
			 args->row, args->column);
	*args->value_out = SPI_getvalue(result_rows->vals[args->row],
									result_rows->tupdesc, args->column + 1);
}

int
aw_result_value(long row, int column, const char **value_out)
{
	ValueArgs	args = {row, column, value_out};

	*value_out = NULL;
	return run_guarded(GUARD_STATEMENT, value_body, &args);
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
	return run_guarded(GUARD_LOG, setting_body, &args);
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

	return run_guarded(GUARD_LOG, log_body, &args);
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

/*
 * In the shim's library (worker_status.c), which the server loaded with
 * RTLD_GLOBAL before this one: only shared memory is touched, under a
 * spinlock, so nothing here can raise an ERROR.
 */
extern void worker_status_in_hook(bool in_hook);
extern void worker_status_retention_error(const char *message);

void
aw_report_in_hook(int in_hook)
{
	worker_status_in_hook(in_hook != 0);
}

void
aw_report_retention_error(const char *message)
{
	worker_status_retention_error(message);
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
	result_rows = NULL;

	/* An error Python caught inside a subtransaction is history. */
	if (!failed && !left_open)
	{
		forget_error();
		return;
	}
	if (!error_recorded)
		aw_record_error("XX000",
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
