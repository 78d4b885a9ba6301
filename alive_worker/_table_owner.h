/*
 * _table_owner.h
 *		Running a table's SQL as the table's owner, in a security-restricted
 *		operation: what PostgreSQL does for autovacuum, ANALYZE and REFRESH
 *		MATERIALIZED VIEW (ExecRefreshMatView), for the bridge (the worker's
 *		statements) and the shim's SQL functions (lag()'s read) alike.
 *
 * A table's triggers, defaults, rules, policies, index expressions and
 * column types are code its owner chose.  Run as the owner, that code can do
 * nothing its owner could not do anyway, whoever asked for the statement;
 * run as a superuser, it would be a way to become one.  Inside, the owner's
 * code cannot SET ROLE or make temporary objects that outlive it, its
 * setting changes are undone on return, and search_path is pinned.
 *
 * Included after postgres.h.  On an ERROR between begin and end the caller's
 * (sub)transaction abort restores the user and the settings, as it does for
 * a SECURITY DEFINER function.
 */
#ifndef ALIVE_WORKER_TABLE_OWNER_H
#define ALIVE_WORKER_TABLE_OWNER_H

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pg_list.h"
#include "parser/analyze.h"
#include "parser/parse_node.h"
#include "storage/lmgr.h"
#include "storage/lockdefs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/syscache.h"

/* The search_path of everything the worker or the extension runs. */
#define ALIVE_WORKER_SEARCH_PATH "pg_catalog, pg_temp"

typedef struct TableOwnerState
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			nest_level;
} TableOwnerState;

static inline void
table_owner_begin(Oid owner, TableOwnerState *state)
{
	GetUserIdAndSecContext(&state->saved_userid, &state->saved_sec_context);
	SetUserIdAndSecContext(owner, state->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	state->nest_level = NewGUCNestLevel();
	/* The worker's own path is this already: no reparse at every tick. */
	if (strcmp(namespace_search_path, ALIVE_WORKER_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", ALIVE_WORKER_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
}

/* Gives the caller's user back; safe in an error path too. */
static inline void
table_owner_restore_user(const TableOwnerState *state)
{
	SetUserIdAndSecContext(state->saved_userid, state->saved_sec_context);
}

static inline void
table_owner_end(const TableOwnerState *state)
{
	AtEOXact_GUC(false, state->nest_level);
	table_owner_restore_user(state);
}

/*
 * A statement on a table reaches its partitions and inheritance children
 * too, and plans and runs their code (index predicates and expressions,
 * constraints, statistics, triggers) as the role it runs as: the table's
 * owner.  A child another role owns would lend that role the owner, so a
 * table with one is refused.  Locks every child with lockmode, as the
 * statement will.
 */
static inline void
table_owner_refuse_foreign_children(Oid relid, Oid owner, const char *table_name)
{
	List	   *children = find_all_inheritors(relid, AccessShareLock, NULL);
	ListCell   *cell;

	foreach(cell, children)
	{
		Oid			child = lfirst_oid(cell);
		HeapTuple	tuple;
		Oid			child_owner;

		if (child == relid)
			continue;
		tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(child));
		if (!HeapTupleIsValid(tuple))
			continue;			/* dropped meanwhile */
		child_owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
		ReleaseSysCache(tuple);
		if (child_owner != owner)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("heartbeat table %s has a child table %s owned by role \"%s\", not by its owner \"%s\"",
							table_name,
							quote_qualified_identifier(get_namespace_name(get_rel_namespace(child)),
													   get_rel_name(child)),
							GetUserNameFromId(child_owner, false),
							GetUserNameFromId(owner, false)),
					 errdetail("alive_worker runs statements on a heartbeat table as its owner, and they reach its partitions and children: a child's code would run as that owner."),
					 errhint("ALTER TABLE %s OWNER TO %s;",
							 quote_qualified_identifier(get_namespace_name(get_rel_namespace(child)),
														get_rel_name(child)),
							 quote_identifier(GetUserNameFromId(owner, false)))));
	}
	list_free(children);
}

/* What a relation is, for errors that refuse one that is not a table. */
static inline const char *
relkind_name(char relkind)
{
	switch (relkind)
	{
		case RELKIND_VIEW:
			return "a view";
		case RELKIND_MATVIEW:
			return "a materialized view";
		case RELKIND_FOREIGN_TABLE:
			return "a foreign table";
		case RELKIND_SEQUENCE:
			return "a sequence";
		default:
			return "not a table";
	}
}


/*
 * The name a statement was written with is looked up again whenever its
 * plan is analysed again, and a schema can be renamed without any lock on
 * its tables: between the lock that told us whose table it is and the
 * statement's planning, "public.log_table" can come to mean another role's
 * table, which would then be planned (its partial indexes' predicates run)
 * and written as the first table's owner.  So while a statement runs as a
 * table's owner, every analysis of that statement's text (the one the plan
 * cache does before planning included) must name the table locked, or it
 * fails before anything of the table's runs: post_parse_analyze_hook, which
 * every analysis calls, checks it (table_owner_guard_*).  Analysis runs
 * none of a table's code.  A plan still valid is checked before it runs, its
 * relations locked as its plan will lock them, so that any invalidation a
 * new lock lets in is taken first.
 */
typedef struct NamesRelid
{
	Oid			relid;
	bool		found;
	bool		lock;			/* lock each relation as its plan would */
} NamesRelid;

static inline bool
table_owner_names_relid_walker(Node *node, void *context)
{
	NamesRelid *names = (NamesRelid *) context;

	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
		{
			if (names->lock)
				LockRelationOid(rte->relid, rte->rellockmode);
			if (rte->relid == names->relid)
				names->found = true;
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, table_owner_names_relid_walker, context,
								 QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, table_owner_names_relid_walker, context);
}

static inline bool
table_owner_queries_name(List *queries, Oid relid, bool lock)
{
	NamesRelid	names = {relid, false, lock};
	ListCell   *query_cell;

	foreach(query_cell, queries)
		(void) table_owner_names_relid_walker((Node *) lfirst(query_cell), &names);
	return names.found;
}

/* The table locked is named as it is now: the message is the only use of its name. */
static inline void
table_owner_refuse_name(Oid relid)
{
	char	   *schema = get_namespace_name(get_rel_namespace(relid));
	char	   *table = get_rel_name(relid);
	const char *name = table != NULL ? quote_qualified_identifier(schema, table) : "a dropped table";

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("alive_worker: the statement run as the owner of %s does not name that table as it was locked", name),
			 errdetail("It names no such table, or a schema was renamed or the table replaced since the lock: "
					   "the statement would have run another table's code as the first one's owner."),
			 errhint("If the owner of the table's schema is not a superuser, use a schema that one owns.")));
}

/* What the analysis hook checks: the statement (by its text) and the table it must name. */
typedef struct TableOwnerGuard
{
	Oid			relid;			/* InvalidOid: no statement runs as an owner */
	const char *text;
	bool		installed;
	post_parse_analyze_hook_type previous;
} TableOwnerGuard;

static inline TableOwnerGuard *
table_owner_guard(void)
{
	static TableOwnerGuard guard;

	return &guard;
}

static inline void
table_owner_guard_analysis(ParseState *pstate, Query *query, JumbleState *jstate)
{
	TableOwnerGuard *guard = table_owner_guard();

	if (guard->previous)
		guard->previous(pstate, query, jstate);
	if (OidIsValid(guard->relid) && pstate->p_sourcetext != NULL &&
		strcmp(pstate->p_sourcetext, guard->text) == 0 &&
		!table_owner_queries_name(list_make1(query), guard->relid, false))
		table_owner_refuse_name(guard->relid);
}

/*
 * Runs body(arg) with every analysis of text checked to name relid; a plan
 * (if any) still valid is checked now.  The caller is in the owner run.
 */
static inline void
table_owner_run_naming(Oid relid, const char *text, SPIPlanPtr plan, void (*body) (void *), void *arg)
{
	TableOwnerGuard *guard = table_owner_guard();
	Oid			outer_relid = guard->relid;
	const char *outer_text = guard->text;

	if (!guard->installed)
	{
		guard->previous = post_parse_analyze_hook;
		post_parse_analyze_hook = table_owner_guard_analysis;
		guard->installed = true;
	}
	if (plan != NULL)
	{
		ListCell   *source_cell;

		foreach(source_cell, SPI_plan_get_plan_sources(plan))
		{
			CachedPlanSource *source = (CachedPlanSource *) lfirst(source_cell);

			if (source->is_valid && !table_owner_queries_name(source->query_list, relid, true))
				table_owner_refuse_name(relid);
		}
	}
	guard->relid = relid;
	guard->text = text;
	PG_TRY();
	{
		body(arg);
	}
	PG_FINALLY();
	{
		guard->relid = outer_relid;
		guard->text = outer_text;
	}
	PG_END_TRY();
}

#endif							/* ALIVE_WORKER_TABLE_OWNER_H */
