/*
 * _bridge_statements.c
 *		The SPI bridge's statements: preparing and executing plans, the rows
 *		they return, and statements on a table run as its owner.
 *
 * Every entry point runs its work through run_guarded() (_bridge.c), so that
 * no ERROR unwinds Python frames.  Compiled into the cffi embedding library.
 */
#include "postgres.h"

#include "_compat.h"			/* what differs between majors */

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "_bridge.h"
#include "_bridge_guard.h"
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
	/* A hook's plan: as the owner only if that lends the worker no rights */
	bool		owner_only_below_worker;

	/*
	 * A kept plan's owner run, as its last execution found it (see "what
	 * stays between ticks" below): the table, the role the statement runs
	 * as, and the worker's role that was checked.  cached_relid InvalidOid:
	 * look it all up again.
	 */
	Oid			cached_relid;
	Oid			cached_run_as;
	Oid			cached_worker_role;
	bool		in_cached_runs; /* linked in cached_owner_runs */
	dlist_node	cached_runs_node;
};

StaticAssertDecl(AW_PRIVILEGE_INSERT == ACL_INSERT &&
				 AW_PRIVILEGE_SELECT == ACL_SELECT &&
				 AW_PRIVILEGE_DELETE == ACL_DELETE,
				 "the bridge's privilege bits are PostgreSQL's");

/*
 * Plans prepared without keep=True: their SPI plans live in SPI's memory and
 * go with the tick's transaction, so the bridge's part of them lives in this
 * context, emptied at the next tick (aw_forget_tick_plans).
 */
static MemoryContext tick_plan_context = NULL;
static long live_plans = 0;

/* Rows of the last statement, owned by SPI, and how many it processed. */
static SPITupleTable *result_rows = NULL;
static long rows_processed = 0;

void
forget_result_rows(void)
{
	result_rows = NULL;
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
 * One exception, the owner rule: the table's code never runs as a superuser
 * unless the worker's role is one.  A superuser's table written by a worker
 * of a lesser role runs as that role, as PostgreSQL itself would run it: a
 * role granted TRIGGER on it (or owning a function its triggers, defaults
 * or index expressions call) then gets the worker's rights, not the
 * superuser's.  With both superusers the statement runs as the owner, which
 * keeps a superuser worker out of other roles' code (alive-worker doctor
 * warns when others own code there).
 *
 * The owner is looked up again whenever it may have changed, not once: the
 * table may have been dropped and made again by another role since the plan
 * was made (a kept plan then follows the name to the new table).  The lookup
 * locks the table by name first, as the statement will, and PostgreSQL
 * resolves the statement's name against the same catalog state: an
 * invalidation that could point the name elsewhere is processed only when a
 * new lock is taken, and none is between this lookup and the statement's
 * own.  What a kept plan's lookup found is kept until such an invalidation
 * (below: what stays between ticks).
 */
/*
 * With AW_EXTENSION_TABLE: the extension's own table (alive_worker.events),
 * written as its owner whoever the worker's role is, which needs no grant on
 * it.  Only a superuser owns it, and only a superuser may add code to it or
 * grant on it, so its owner runs no one else's code; and a role below
 * superuser (the worker's, so a trigger granted on the heartbeat table, or a
 * hook) can neither write nor delete the ledger.  Checked at every
 * execution: a member of extension alive_worker, owned by a superuser.
 */
#define EXTENSION_TABLE ((AclMode) AW_EXTENSION_TABLE)

typedef struct TableOwnerRun
{
	const RangeVar *table;
	LOCKMODE	lockmode;		/* the statement's own: a read's, or a write's */
	AclMode		privileges;
	bool		owner_only_below_worker;	/* see table_owner_run_as() */
	void		(*body) (void *);
	void	   *arg;
} TableOwnerRun;

/*
 * The lock the statement itself takes on its table, taken first by the
 * owner's lookup: a read's for a plan that only reads (a hook's
 * TableAccess.for_select), a write's for the heartbeat's INSERT and
 * retention's DELETE.
 */
static LOCKMODE
statement_lockmode(AclMode privileges)
{
	return (privileges & ~(ACL_SELECT | EXTENSION_TABLE)) != 0 ? RowExclusiveLock : AccessShareLock;
}

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
/*
 * The extension's table by name, without the worker role's USAGE on its
 * schema (it has none): only a superuser can make or rename anything there.
 */
static Oid
lock_extension_table(const RangeVar *table, LOCKMODE lockmode)
{
	Oid			relid = get_relname_relid(table->relname, get_namespace_oid(table->schemaname, false));

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", table->schemaname, table->relname)));
	LockRelationOid(relid, lockmode);
	return relid;
}

static Oid
lock_table_for_owner_run(const RangeVar *table, LOCKMODE lockmode, AclMode privileges, Oid *relid_out)
{
	bool		extension_table = (privileges & EXTENSION_TABLE) != 0;
	Oid			relid = extension_table ? lock_extension_table(table, lockmode) :
		RangeVarGetRelidExtended(table, lockmode, 0, NULL, NULL);
	Relation	relation = relation_open(relid, NoLock);
	char		relkind = relation->rd_rel->relkind;
	char		persistence = relation->rd_rel->relpersistence;
	Oid			owner = relation->rd_rel->relowner;
	Oid			worker_role = GetUserId();
	AclMode		missing;

	relation_close(relation, NoLock);
	*relid_out = relid;
	/*
	 * A row of an unlogged or temporary table writes no WAL, so its commit
	 * waits for neither the WAL flush nor synchronous standbys: a heartbeat
	 * there would commit while every client's commit hangs.
	 */
	if ((privileges & ACL_INSERT) != 0 && persistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("alive_worker table %s is %s: its rows write no WAL",
						quote_qualified_identifier(table->schemaname, table->relname),
						persistence == RELPERSISTENCE_UNLOGGED ? "unlogged" : "temporary"),
				 errdetail("A heartbeat commits as a client's commit does only in a permanent table."),
				 errhint("ALTER TABLE %s SET LOGGED;",
						 quote_qualified_identifier(table->schemaname, table->relname))));
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("alive_worker table %s is %s, not a table",
						quote_qualified_identifier(table->schemaname, table->relname),
						relkind_name(relkind)),
				 errdetail("The worker writes only into ordinary or partitioned tables.")));
	if (extension_table)
	{
		Oid			extension = get_extension_oid("alive_worker", true);

		if (!OidIsValid(extension) ||
			getExtensionOfObject(RelationRelationId, relid) != extension ||
			!superuser_arg(owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("alive_worker table %s is not extension alive_worker's own, owned by a superuser",
							quote_qualified_identifier(table->schemaname, table->relname))));
		return owner;
	}
	table_owner_refuse_foreign_children(relid, owner,
										quote_qualified_identifier(table->schemaname, table->relname));
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

/*
 * Who a statement on a table of this owner runs as.  The owner rule above;
 * and a hook's statement (its SQL the hook's, on any table, the table only
 * named) runs as the owner only where that lends the worker's role nothing:
 * the worker is a superuser, or already holds the owner's privileges.  Else
 * it runs as the worker's role, whose rights the owner's code then gets, as
 * PostgreSQL itself would run it: no role below a superuser gains another
 * role's rights through a hook.
 */
static Oid
table_owner_run_as(Oid owner, bool owner_only_below_worker)
{
	Oid			worker_role = GetUserId();

	if (superuser_arg(owner) && !superuser_arg(worker_role))
		return worker_role;
	if (owner_only_below_worker && !superuser_arg(worker_role) &&
		!has_privs_of_role(worker_role, owner))
		return worker_role;
	return owner;
}

/* ---- what stays between ticks ---- */

/*
 * The heartbeat's INSERT runs through a kept plan at every tick, and the
 * lookup above (the table by name, its kind and persistence, the worker
 * role's privileges, who the statement runs as) would find the same answer
 * every time: some 2,800 instructions of a tick's 70,000 (callgrind, issue
 * 25).  So a kept plan keeps what its last lookup found, and forgets it on
 * the invalidations PostgreSQL sends for everything the answer depends on:
 *
 * - the table's relcache entry: its owner, its grants (relacl), its kind and
 *   persistence, its name, and its drop are all changes of its pg_class row;
 * - roles (AUTHOID): whether the owner or the worker's role is a superuser;
 * - role memberships (AUTHMEMROLEMEM): privileges held through a granted
 *   role, and has_privs_of_role() of a hook's plan;
 * - schemas (NAMESPACEOID): the schema renamed or dropped (the name may then
 *   lead to another table), and USAGE on it granted or revoked.
 *
 * Invalidations are processed when a lock is newly taken, so a kept answer
 * is used only after the table's lock is taken, as RangeVarGetRelidExtended
 * checks its own lookup: if an invalidation came with the lock, the lock is
 * let go and everything looked up again.  The worker's role is compared as
 * well, since a hook's statement may SET ROLE.  The extension's own table is
 * always looked up: whether it still belongs to the extension is read from
 * pg_depend, which sends no invalidation, and the ledger writes rarely.
 */
static dlist_head cached_owner_runs = DLIST_STATIC_INIT(cached_owner_runs);
static bool owner_run_callbacks_registered = false;

static void
forget_owner_runs(Oid relid)
{
	dlist_iter	iter;

	dlist_foreach(iter, &cached_owner_runs)
	{
		aw_plan    *plan = dlist_container(aw_plan, cached_runs_node, iter.cur);

		if (!OidIsValid(relid) || plan->cached_relid == relid)
			plan->cached_relid = InvalidOid;
	}
}

/*
 * Any relation's, not only the kept table's: a child's owner changed (or a
 * child attached) sends its own relation's invalidation, not the parent's,
 * and the refusal of a child another role owns must see it.  Relcache
 * invalidations are rare in a steady state (DDL, VACUUM's statistics).
 */
static void
owner_run_relcache_callback(Datum arg, Oid relid)
{
	forget_owner_runs(InvalidOid);
}

static void
owner_run_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	forget_owner_runs(InvalidOid);
}

/* A kept plan that runs as a table's owner keeps its lookup from now on. */
static void
keep_owner_runs_of(aw_plan *plan)
{
	if (plan->owner_of == NULL || (plan->required_privileges & EXTENSION_TABLE) != 0)
		return;
	if (!owner_run_callbacks_registered)
	{
		CacheRegisterRelcacheCallback(owner_run_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, owner_run_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, owner_run_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, owner_run_syscache_callback, (Datum) 0);
		owner_run_callbacks_registered = true;
	}
	plan->cached_relid = InvalidOid;
	dlist_push_tail(&cached_owner_runs, &plan->cached_runs_node);
	plan->in_cached_runs = true;
}

/*
 * Whether the plan's kept lookup still holds: the table locked first, as
 * the full lookup would, so that any invalidation sent before the lock is
 * processed now.
 */
static bool
owner_run_still_holds(aw_plan *plan, LOCKMODE lockmode)
{
	Oid			relid = plan->cached_relid;

	if (!OidIsValid(relid) || plan->cached_worker_role != GetUserId())
		return false;
	LockRelationOid(relid, lockmode);
	if (plan->cached_relid == relid)
		return true;
	/* Changed meanwhile: as RangeVarGetRelidExtended, let go and look again. */
	UnlockRelationOid(relid, lockmode);
	return false;
}

/*
 * The table a run as its owner locked, while its body runs: the statement
 * must still name it when it is prepared or executed (_table_owner.h).
 */
static Oid	owner_run_relid = InvalidOid;

/*
 * Runs body(arg), the statement of text (and plan, once prepared), so that
 * every analysis of it must name the table locked (_table_owner.h).
 */
static void
naming_the_locked_table(const char *text, SPIPlanPtr plan, void (*body) (void *), void *arg)
{
	if (!OidIsValid(owner_run_relid))
	{
		body(arg);
		return;
	}
	table_owner_run_naming(owner_run_relid, text, plan, body, arg);
}

static void
run_as_table_owner(TableOwnerRun *run, aw_plan *plan)
{
	Oid			owner;
	Oid			relid;
	Oid			run_as;
	TableOwnerState state;
	Oid			outer_relid = owner_run_relid;

	if (plan != NULL && plan->in_cached_runs && owner_run_still_holds(plan, run->lockmode))
	{
		run_as = plan->cached_run_as;
		relid = plan->cached_relid;
	}
	else
	{
		owner = lock_table_for_owner_run(run->table, run->lockmode, run->privileges, &relid);
		if ((run->privileges & EXTENSION_TABLE) != 0)
		{
			/* The ledger is the worker's own record: a hook's statement never writes it. */
			if (run->owner_only_below_worker)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("a hook's statement may not run as the owner of extension alive_worker's own table")));
			run_as = owner;
		}
		else
			run_as = table_owner_run_as(owner, run->owner_only_below_worker);
		if (plan != NULL && plan->in_cached_runs)
		{
			plan->cached_run_as = run_as;
			plan->cached_worker_role = GetUserId();
			plan->cached_relid = relid;
		}
	}
	/*
	 * Checked even as the worker's own role: a superuser worker's own table
	 * is the default, and another table's code run as it would be a
	 * superuser's (red team, round two).
	 */
	owner_run_relid = relid;
	table_owner_begin(run_as, &state);
	PG_TRY();
	{
		run->body(run->arg);
	}
	PG_CATCH();
	{
		owner_run_relid = outer_relid;
		/* Python runs again before the abort that would give the user back. */
		table_owner_restore_user(&state);
		PG_RE_THROW();
	}
	PG_END_TRY();
	owner_run_relid = outer_relid;
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
	bool		owner_only_below_worker;
	aw_plan   **plan_out;
} PrepareArgs;

typedef struct SPIPrepareArgs
{
	aw_plan    *plan;
	const char *query;
	Oid		   *types;
} SPIPrepareArgs;

static void
spi_prepare_unguarded(void *arg)
{
	SPIPrepareArgs *args = arg;

	args->plan->plan = SPI_prepare(args->query, args->plan->nargs, args->types);
}

static void
spi_prepare_body(void *arg)
{
	SPIPrepareArgs *args = arg;

	naming_the_locked_table(args->query, NULL, spi_prepare_unguarded, args);
}

static void
prepare_body(void *arg)
{
	PrepareArgs *args = arg;
	MemoryContext plan_context;
	MemoryContext old_context;
	aw_plan    *plan;
	Oid		   *types;

	if (!args->keep && tick_plan_context == NULL)
		tick_plan_context = AllocSetContextCreate(TopMemoryContext,
												  "alive_worker tick plans",
												  ALLOCSET_SMALL_SIZES);
	plan_context = AllocSetContextCreate(args->keep ? TopMemoryContext : tick_plan_context,
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
		plan->owner_only_below_worker = args->owner_only_below_worker;
	}
	MemoryContextSwitchTo(old_context);

	PG_TRY();
	{
		SPIPrepareArgs prepare = {plan, args->query, types};

		for (int i = 0; i < args->nargs; i++)
		{
			Oid			input_function;

			CHECK_FOR_INTERRUPTS();
			types[i] = DatumGetObjectId(DirectFunctionCall1(regtypein,
															CStringGetDatum(args->argtypes[i])));
			getTypeInputInfo(types[i], &input_function, &plan->input_params[i]);
			fmgr_info_cxt(input_function, &plan->input_functions[i], plan_context);
		}

		/* Parsing resolves the table's name: as its owner too. */
		if (plan->owner_of != NULL)
		{
			TableOwnerRun run = {plan->owner_of, statement_lockmode(plan->required_privileges),
				plan->required_privileges & EXTENSION_TABLE,
			plan->owner_only_below_worker, spi_prepare_body, &prepare};

			run_as_table_owner(&run, NULL);
		}
		else
			spi_prepare_body(&prepare);
		if (plan->plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		if (args->keep && SPI_keepplan(plan->plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		if (args->keep)
			keep_owner_runs_of(plan);
	}
	PG_CATCH();
	{
		MemoryContextDelete(plan_context);
		PG_RE_THROW();
	}
	PG_END_TRY();

	live_plans++;
	*args->plan_out = plan;
}

int
aw_prepare(const char *query, int nargs, const char *const *argtypes,
		   int keep, aw_plan **plan_out)
{
	PrepareArgs args = {query, nargs, argtypes, keep != 0, NULL, NULL, 0, false, plan_out};

	*plan_out = NULL;
	return run_guarded(GUARD_STATEMENT, prepare_body, &args);
}

int
aw_prepare_as_owner(const char *query, int nargs, const char *const *argtypes,
					int keep, const char *schema, const char *table,
					int privileges, int for_hook, aw_plan **plan_out)
{
	PrepareArgs args = {query, nargs, argtypes, keep != 0, schema, table,
	(AclMode) privileges, for_hook != 0, plan_out};

	*plan_out = NULL;
	return run_guarded(GUARD_STATEMENT, prepare_body, &args);
}

/*
 * Python calls this on the worker's thread, between bridge calls (spi.py
 * defers what a garbage collection drops to the next tick), and only for
 * plans of this tick or kept ones.
 */
void
aw_free_plan(aw_plan *plan)
{
	/* From another thread, the plan is left for the worker's exit. */
	if (plan == NULL || !on_worker_thread())
		return;
	if (plan->plan != NULL)
		SPI_freeplan(plan->plan);
	if (plan->in_cached_runs)
		dlist_delete(&plan->cached_runs_node);
	MemoryContextDelete(plan->context);
	live_plans--;
}

void
aw_forget_tick_plans(void)
{
	long		forgotten = 0;

	if (!on_worker_thread() || tick_plan_context == NULL)
		return;
	/* Their SPI plans went with the transaction: only the shells remain. */
	for (MemoryContext child = tick_plan_context->firstchild; child != NULL;
		 child = child->nextchild)
		forgotten++;
	MemoryContextReset(tick_plan_context);
	live_plans -= forgotten;
}

long
aw_live_plans(void)
{
	return live_plans;
}

typedef struct ExecuteArgs
{
	aw_plan    *plan;
	const char *const *values;
	long		max_rows;		/* 0: no limit */
	long	   *rows_out;
} ExecuteArgs;

typedef struct SPIExecuteArgs
{
	SPIPlanPtr	plan;
	Datum	   *datums;
	const char *nulls;
	long		tcount;
	int			rc;
} SPIExecuteArgs;

static void
spi_execute_unguarded(void *arg)
{
	SPIExecuteArgs *args = arg;

	args->rc = SPI_execute_plan(args->plan, args->datums, args->nulls, false, args->tcount);
}

static void
spi_execute_body(void *arg)
{
	SPIExecuteArgs *args = arg;
	List	   *sources = SPI_plan_get_plan_sources(args->plan);
	const char *text = sources != NIL ? ((CachedPlanSource *) linitial(sources))->query_string : "";

	naming_the_locked_table(text, args->plan, spi_execute_unguarded, args);
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

		CHECK_FOR_INTERRUPTS();

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
		/*
		 * A limit is given to the executor, one row past it: a statement
		 * that returns more stops there, before the rows are in memory.
		 */
		SPIExecuteArgs execute = {plan->plan, datums, nulls,
		args->max_rows > 0 ? args->max_rows + 1 : 0, 0};

		if (plan->owner_of != NULL)
		{
			TableOwnerRun run = {plan->owner_of, statement_lockmode(plan->required_privileges),
			plan->required_privileges, plan->owner_only_below_worker, spi_execute_body, &execute};

			run_as_table_owner(&run, plan);
		}
		else
			spi_execute_body(&execute);
		rc = execute.rc;
	}
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	if (args->max_rows > 0 && SPI_tuptable != NULL && SPI_processed > (uint64) args->max_rows)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("alive_worker: the hook's statement returns more than %ld rows, the limit of one statement's result",
						args->max_rows),
				 errhint("Fetch fewer rows at a time (LIMIT, a cursor of your own, or an aggregate).")));
	result_rows = SPI_tuptable;
	rows_processed = (long) SPI_processed;
	*args->rows_out = result_rows ? rows_processed : -1;
}

/* Python keeps the handle of a plan it freed as NULL. */
static int
refuse_freed_plan(void)
{
	aw_record_error(SQLSTATE_INVALID_SQL_STATEMENT_NAME, "alive_worker plan was freed and cannot be executed",
					NULL, NULL, NULL);
	return AW_ERROR;
}

int
aw_execute(aw_plan *plan, const char *const *values, long *rows_out)
{
	return aw_execute_bounded(plan, values, 0, rows_out);
}

int
aw_execute_bounded(aw_plan *plan, const char *const *values, long max_rows, long *rows_out)
{
	ExecuteArgs args = {plan, values, max_rows, rows_out};

	*rows_out = 0;
	if (plan == NULL)
		return refuse_freed_plan();
	return run_guarded(GUARD_STATEMENT, execute_body, &args);
}

int
aw_execute_text(aw_plan *plan, const char *value, long *rows_out)
{
	const char *values[1] = {value};
	ExecuteArgs args = {plan, values, 0, rows_out};

	*rows_out = 0;
	if (plan == NULL)
		return refuse_freed_plan();
	if (!on_worker_thread())
		return refuse_other_thread();
	if (plan->nargs != 1)
	{
		aw_record_error(SQLSTATE_INTERNAL_ERROR, "alive_worker aw_execute_text needs a plan of one parameter",
						NULL, NULL, NULL);
		return AW_ERROR;
	}
	if (run_guarded(GUARD_STATEMENT, execute_body, &args) != AW_OK)
		return AW_ERROR;

	/*
	 * The rows it inserted or changed, not whether it returned any: its rows
	 * are left unread, and the heartbeat needs to know it wrote one without
	 * a second call into the bridge (aw_rows_processed), which would cost
	 * two more hand-overs of the GIL at every tick.
	 */
	*rows_out = rows_processed;
	return AW_OK;
}

long
aw_rows_processed(void)
{
	return on_worker_thread() ? rows_processed : 0;
}

int
aw_result_columns(void)
{
	/* The rows belong to the worker's thread, which may free them now. */
	if (!on_worker_thread())
		return -1;
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

