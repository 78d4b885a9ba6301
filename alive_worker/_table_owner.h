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
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/lockdefs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
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

#endif							/* ALIVE_WORKER_TABLE_OWNER_H */
