/*-------------------------------------------------------------------------
 *
 * sql_functions.c
 *		The SQL face of the workers: alive_worker.status(), start(), stop(),
 *		created by CREATE EXTENSION alive_worker (sql/alive_worker--*.sql).
 *
 * These run in client backends, which load this library but never Python.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "postmaster/bgworker.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "alive_worker/_table_owner.h"
#include "worker_status.h"

PG_FUNCTION_INFO_V1(alive_worker_status);
PG_FUNCTION_INFO_V1(alive_worker_start);
PG_FUNCTION_INFO_V1(alive_worker_stop);
PG_FUNCTION_INFO_V1(alive_worker_configured_heartbeats);
PG_FUNCTION_INFO_V1(alive_worker_heartbeats);

/* How many of the newest heartbeats lag() reads to find the interval */
#define RECENT_HEARTBEATS 9
/* At most what heartbeats() returns in one call (alive-worker tail reads in batches) */
#define MAX_HEARTBEATS_READ 100000

/*
 * 18 in 1.0 and 1.1; 1.2 appends the status (issue 13) and hooks' (issue 12);
 * 1.3 the terminations (issue 19) and the client-path probe (issue 21)
 */
#define STATUS_COLUMNS 44
#define STOP_WAIT_MS 5000

static void
require_preloaded(void)
{
	if (worker_status_count() < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("alive_worker is not loaded by shared_preload_libraries"),
				 errhint("Add alive_worker to shared_preload_libraries and restart the server.")));
}

static int
cmp_int32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/* The q-quantile of the recent tick durations, in milliseconds. */
static double
quantile_ms(int32 *sorted, int count, double q)
{
	int			rank = (int) (q * (count - 1) + 0.5);

	return sorted[rank] / 1000.0;
}

static Datum
timestamp_or_null(TimestampTz value, bool *isnull)
{
	*isnull = value == 0;
	return TimestampTzGetDatum(value);
}

/*
 * What the worker is waiting for in its tick, which it cannot say itself
 * while it waits: a lock (held by whom, since when) or, in its commit, the
 * synchronous standbys.  Read from its PGPROC, as pg_stat_activity does.
 */
static const char *
refine_waiting_state(WorkerStatus *copy, Datum *blocked_by, bool *blocked_by_null,
					 char *detail, size_t size)
{
	PGPROC	   *proc;
	uint32		wait_event_info;

	if (copy->pid == 0 || (copy->state != WORKER_TICKING && copy->state != WORKER_IN_HOOK))
		return NULL;
	proc = BackendPidGetProc(copy->pid);
	if (proc == NULL)
		return NULL;
	wait_event_info = *((volatile uint32 *) &proc->wait_event_info);
	if ((wait_event_info & 0xFF000000) == PG_WAIT_LOCK)
	{
		Datum		pids = DirectFunctionCall1(pg_blocking_pids, Int32GetDatum(copy->pid));
		ArrayType  *array = DatumGetArrayTypeP(pids);
		int			count = ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array));
		TimestampTz wait_start = (TimestampTz) pg_atomic_read_u64(&proc->waitStart);
		StringInfoData text;

		initStringInfo(&text);
		appendStringInfo(&text, "waiting for a lock (%s) held by PID",
						 pgstat_get_wait_event(wait_event_info));
		if (count > 1)
			appendStringInfoChar(&text, 's');
		for (int i = 0; i < count; i++)
			appendStringInfo(&text, "%s %d", i > 0 ? "," : "", ((int32 *) ARR_DATA_PTR(array))[i]);
		worker_status_clip(detail, text.data, size);
		*blocked_by = pids;
		*blocked_by_null = false;
		if (wait_start != 0)
			copy->state_since = wait_start;
		return worker_state_name(WORKER_BLOCKED_ON_LOCK);
	}
	if (copy->commit_started_at != 0 && wait_event_info == WAIT_EVENT_SYNC_REP)
	{
		copy->state_since = copy->commit_started_at;
		snprintf(detail, size, "the heartbeat's commit waits for synchronous_standby_names = '%s'",
				 GetConfigOption("synchronous_standby_names", false, false));
		return worker_state_name(WORKER_WAITING_FOR_STANDBY);
	}
	return NULL;
}

Datum
alive_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		in_recovery = RecoveryInProgress();

	require_preloaded();
	InitMaterializedSRF(fcinfo, 0);

	/*
	 * Columns are only ever added at the end, so a database whose extension
	 * is still at an older version (fewer columns) reads the first ones.
	 */
	if (rsinfo->setDesc->natts > STATUS_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("alive_worker.status() expects %d columns, the library returns %d",
						rsinfo->setDesc->natts, STATUS_COLUMNS),
				 errhint("Install the alive_worker library that matches the extension's version, then restart the server.")));

	for (int i = 0; i < worker_status_count(); i++)
	{
		WorkerStatus copy;
		WorkerStatus *slot = worker_status_slot(i);
		Datum		values[STATUS_COLUMNS];
		bool		nulls[STATUS_COLUMNS] = {0};
		const char *state;
		const char *waiting;
		char		detail[ERROR_MESSAGE_SIZE];
		Datum		blocked_by = (Datum) 0;
		bool		blocked_by_null = true;
		int			c = 0;

		SpinLockAcquire(&slot->mutex);
		memcpy(&copy, slot, sizeof(copy));
		SpinLockRelease(&slot->mutex);

		state = worker_state_name(copy.state);
		strlcpy(detail, copy.state_detail, sizeof(detail));
		/* Not started yet, or started and waiting (wait_for_recovery_to_end). */
		if (in_recovery && copy.state == WORKER_STARTING)
		{
			state = worker_state_name(WORKER_WAITING_FOR_RECOVERY);
			strlcpy(detail, "the worker writes heartbeats once this server is promoted",
					sizeof(detail));
		}
		else if ((waiting = refine_waiting_state(&copy, &blocked_by, &blocked_by_null,
												 detail, sizeof(detail))) != NULL)
			state = waiting;
		else if (copy.state == WORKER_TICKING || copy.state == WORKER_IN_HOOK)
		{
			/*
			 * A tick in flight proves nothing yet: until it ends, what the
			 * last tick and the last probe found still stands.  Read between
			 * two failing ticks, "ticking" would say OK while clients cannot
			 * write.
			 */
			if (copy.probe_failing)
			{
				state = worker_state_name(WORKER_PROBE_FAILING);
				worker_status_describe_probe_failure(&copy, detail, sizeof(detail));
			}
			else if (copy.last_error_at > copy.last_ok_at)
				state = worker_state_name(WORKER_FAILING);
		}

		values[c++] = CStringGetTextDatum(copy.database);
		values[c++] = CStringGetTextDatum(copy.role[0] ? copy.role : "(bootstrap superuser)");
		values[c++] = CStringGetTextDatum(copy.target_table);
		values[c++] = DirectFunctionCall7(make_interval, 0, 0, 0, 0, 0, 0,
										  Float8GetDatum(copy.interval_ms / 1000.0));
		values[c++] = CStringGetTextDatum(state);
		nulls[c] = copy.pid == 0;
		values[c++] = Int32GetDatum(copy.pid);
		values[c] = timestamp_or_null(copy.started_at, &nulls[c]);
		c++;
		values[c++] = Int64GetDatum(copy.ticks_ok);
		values[c++] = Int64GetDatum(copy.ticks_failed);
		values[c++] = Int64GetDatum(copy.ticks_skipped);
		values[c] = timestamp_or_null(copy.last_tick_at, &nulls[c]);
		c++;
		values[c] = timestamp_or_null(copy.last_ok_at, &nulls[c]);
		c++;
		nulls[c] = copy.last_error_sqlstate[0] == '\0';
		values[c++] = CStringGetTextDatum(copy.last_error_sqlstate);
		nulls[c] = copy.last_error_at == 0;
		values[c++] = CStringGetTextDatum(copy.last_error_message);
		values[c] = timestamp_or_null(copy.last_error_at, &nulls[c]);
		c++;
		values[c] = timestamp_or_null(copy.next_tick_at, &nulls[c]);
		c++;
		if (copy.recent_count > 0)
		{
			qsort(copy.recent_tick_us, copy.recent_count, sizeof(int32), cmp_int32);
			values[c++] = Float8GetDatum(quantile_ms(copy.recent_tick_us, copy.recent_count, 0.50));
			values[c++] = Float8GetDatum(quantile_ms(copy.recent_tick_us, copy.recent_count, 0.99));
		}
		else
		{
			nulls[c++] = true;
			nulls[c++] = true;
		}
		/* status (issue 13) */
		nulls[c] = detail[0] == '\0';
		values[c++] = CStringGetTextDatum(detail);
		values[c] = timestamp_or_null(copy.state_since, &nulls[c]);
		c++;
		values[c] = timestamp_or_null(copy.next_retry_at, &nulls[c]);
		c++;
		values[c++] = Int32GetDatum(copy.connect_failures);
		nulls[c] = blocked_by_null;
		values[c++] = blocked_by;
		nulls[c] = copy.last_commit_us <= 0;
		values[c++] = Float8GetDatum(copy.last_commit_us / 1000.0);
		nulls[c] = copy.retention_error[0] == '\0';
		values[c++] = CStringGetTextDatum(copy.retention_error);
		/* hooks (issue 12), 1.2 */
		values[c++] = Int64GetDatum(copy.hook_failures);
		nulls[c] = copy.last_hook_error_at == 0;
		values[c++] = CStringGetTextDatum(copy.last_hook_error);
		values[c] = timestamp_or_null(copy.last_hook_error_at, &nulls[c]);
		c++;
		if (copy.recent_hook_count > 0)
		{
			qsort(copy.recent_hook_us, copy.recent_hook_count, sizeof(int32), cmp_int32);
			values[c++] = Float8GetDatum(quantile_ms(copy.recent_hook_us, copy.recent_hook_count, 0.50));
			values[c++] = Float8GetDatum(quantile_ms(copy.recent_hook_us, copy.recent_hook_count, 0.99));
		}
		else
		{
			nulls[c++] = true;
			nulls[c++] = true;
		}
		/* trust (issue 19), 1.3 */
		values[c++] = Int64GetDatum(copy.terminations);
		values[c] = timestamp_or_null(copy.last_terminated_at, &nulls[c]);
		c++;
		nulls[c] = copy.last_terminated_by == 0;
		values[c++] = Int32GetDatum(copy.last_terminated_by);
		/* clients (issue 21), 1.3 */
		nulls[c] = copy.probe_role[0] == '\0';
		values[c++] = CStringGetTextDatum(copy.probe_role);
		values[c++] = Int64GetDatum(copy.probes_ok);
		values[c++] = Int64GetDatum(copy.probes_failed);
		values[c] = timestamp_or_null(copy.last_probe_at, &nulls[c]);
		c++;
		values[c] = timestamp_or_null(copy.last_probe_ok_at, &nulls[c]);
		c++;
		nulls[c] = copy.last_probe_at == 0;
		values[c++] = Float8GetDatum(copy.last_probe_us / 1000.0);
		nulls[c] = !copy.probe_failing;
		values[c++] = CStringGetTextDatum(copy.probe_error_sqlstate);
		nulls[c] = !copy.probe_failing;
		values[c++] = CStringGetTextDatum(copy.probe_error_message);
		nulls[c] = copy.disk_free_bytes < 0;
		values[c++] = Int64GetDatum(copy.disk_free_bytes);
		nulls[c] = copy.disk_size_bytes < 0;
		values[c++] = Int64GetDatum(copy.disk_size_bytes);
		nulls[c] = copy.disk_free_where[0] == '\0';
		values[c++] = CStringGetTextDatum(copy.disk_free_where);
		Assert(c == STATUS_COLUMNS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* The index of the configured worker for database, or an ERROR. */
static int
configured_worker_index(const char *database)
{
	List	   *databases;

	require_preloaded();
	databases = worker_status_databases();
	for (int i = 0; i < list_length(databases); i++)
		if (strcmp(list_nth(databases, i), database) == 0)
			return i;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("no alive worker is configured for database \"%s\"", database),
			 errhint("Workers are configured by alive_worker.databases (or alive_worker.database), read at server start.")));
	return -1;					/* keep the compiler quiet */
}

static int
running_pid(int index)
{
	WorkerStatus *slot = worker_status_slot(index);
	int			pid;

	SpinLockAcquire(&slot->mutex);
	pid = slot->pid;
	SpinLockRelease(&slot->mutex);
	return pid;
}

Datum
alive_worker_start(PG_FUNCTION_ARGS)
{
	char	   *database = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			index = configured_worker_index(database);
	WorkerStatus *slot = worker_status_slot(index);
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	WorkerState state;

	/*
	 * Claim the slot before registering the worker, in one step under its
	 * lock: of concurrent calls, only the first finds it stopped, so one
	 * worker is started, not one per call.
	 */
	SpinLockAcquire(&slot->mutex);
	state = slot->state;
	if (state == WORKER_STOPPED || state == WORKER_NOT_REGISTERED)
		slot->state = WORKER_STARTING;
	SpinLockRelease(&slot->mutex);
	/* Only a stopped or unregistered worker is gone for good; any other will run again. */
	if (state != WORKER_STOPPED && state != WORKER_NOT_REGISTERED)
	{
		ereport(NOTICE,
				(errmsg("the alive worker for database \"%s\" is not stopped (%s)",
						database, worker_state_name(state))));
		PG_RETURN_BOOL(false);
	}

	alive_worker_describe(&worker, index);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		/* Every slot is taken: one more is needed. */
		worker_status_not_registered(index, max_worker_processes + 1);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the alive worker for database \"%s\": no free background worker slot", database),
				 errdetail("All max_worker_processes = %d slots are in use.", max_worker_processes),
				 errhint("Raise max_worker_processes.")));
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
	{
		worker_status_set_state(index, WORKER_STOPPED);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("the alive worker for database \"%s\" did not start", database)));
	}
	PG_RETURN_BOOL(true);
}

Datum
alive_worker_stop(PG_FUNCTION_ARGS)
{
	char	   *database = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			index = configured_worker_index(database);
	int			pid = running_pid(index);

	if (pid == 0)
	{
		ereport(NOTICE,
				(errmsg("the alive worker for database \"%s\" is not running", database)));
		PG_RETURN_BOOL(false);
	}
	worker_status_stop_requested(index, MyProcPid, GetUserNameFromId(GetUserId(), false));
	if (kill(pid, SIGTERM) != 0)
		ereport(ERROR,
				(errmsg("could not signal the alive worker for database \"%s\" (PID %d): %m",
						database, pid)));
	/* Wait for it, so that a start() right after finds it stopped. */
	for (int waited = 0; running_pid(index) == pid && waited < STOP_WAIT_MS; waited += 10)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10 * 1000L);
	}
	PG_RETURN_BOOL(running_pid(index) != pid);
}

/* ---- one reader of heartbeat tables ---- */

/*
 * Every read of a heartbeat table that the extension makes for someone
 * (lag(), lag(table), alive-worker tail through heartbeats()) goes through
 * read_heartbeats().  It runs as the table's owner inside a
 * security-restricted operation (_table_owner.h), never as the caller or the
 * extension's owner: whatever code the table holds (a partial index's
 * predicate the planner runs, a policy) is its owner's, and runs with the
 * owner's rights only.  Only an ordinary or partitioned table is read, never
 * a view whose query someone else wrote, and only its columns of
 * pg_catalog's types are used, so that no type or operator class of another
 * role's formats or sorts the rows.
 */
typedef struct HeartbeatTable
{
	Oid			relid;
	char	   *name;			/* quoted schema.table */
	Oid			owner;
	Oid			ts_type;		/* timestamp or timestamptz */
	bool		pk_is_integer;	/* rows are ordered by pk, else by ts */
	bool		message_is_text;
} HeartbeatTable;

/* The configured table, locked; InvalidOid if missing_ok and there is none. */
static Oid
configured_heartbeat_table(bool missing_ok, char **name)
{
	const char *schema = GetConfigOption("alive_worker.schema", false, false);
	const char *table = GetConfigOption("alive_worker.table", false, false);
	Oid			relid;

	*name = pstrdup(quote_qualified_identifier(schema, table));
	relid = RangeVarGetRelidExtended(makeRangeVar(pstrdup(schema), pstrdup(table), -1),
									 AccessShareLock, RVR_MISSING_OK, NULL, NULL);
	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("heartbeat table %s does not exist", *name),
				 errhint("The alive worker creates it on the primary at its first tick; check alive_worker.workers there, and that alive_worker.schema and alive_worker.table are the same here.")));
	return relid;
}

/* Checks that the locked relation is a heartbeat table; what its columns are. */
static void
inspect_heartbeat_table(HeartbeatTable *table)
{
	Relation	relation = relation_open(table->relid, NoLock);
	char		relkind = relation->rd_rel->relkind;
	bool		row_security = relation->rd_rel->relrowsecurity;

	table->owner = relation->rd_rel->relowner;
	table->ts_type = InvalidOid;
	table->pk_is_integer = false;
	table->message_is_text = false;
	for (int i = 0; i < RelationGetNumberOfAttributes(relation); i++)
	{
		Form_pg_attribute column = TupleDescAttr(RelationGetDescr(relation), i);
		Oid			type = column->atttypid;

		if (column->attisdropped)
			continue;
		if (strcmp(NameStr(column->attname), "ts") == 0)
			table->ts_type = type;
		else if (strcmp(NameStr(column->attname), "pk") == 0)
			table->pk_is_integer = type == INT2OID || type == INT4OID || type == INT8OID;
		else if (strcmp(NameStr(column->attname), "message") == 0)
			table->message_is_text = type == TEXTOID || type == VARCHAROID;
	}
	relation_close(relation, NoLock);

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("heartbeat table %s is %s, not a table", table->name, relkind_name(relkind)),
				 errdetail("alive_worker reads heartbeats only from an ordinary or partitioned table.")));
	table_owner_refuse_foreign_children(table->relid, table->owner, table->name);
	/* The owner's code runs as the owner, but the owner's view of the rows is not the caller's. */
	if (row_security)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("heartbeat table %s has row-level security", table->name),
				 errdetail("alive_worker reads heartbeat tables as their owner, who would see rows the caller may not.")));
	if (table->ts_type != TIMESTAMPOID && table->ts_type != TIMESTAMPTZOID)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("heartbeat table %s has no column \"ts\" of a timestamp type", table->name),
				 errdetail("The lag is measured from the time each heartbeat was written, in column ts.")));
}

/* Whether alive_worker.databases names this database. */
static bool
database_has_a_worker(void)
{
	const char *here = get_database_name(MyDatabaseId);
	ListCell   *cell;

	foreach(cell, worker_status_databases())
	{
		if (strcmp((const char *) lfirst(cell), here) == 0)
			return true;
	}
	return false;
}

/*
 * The table to read: the configured one (relid InvalidOid), which whoever may
 * call the function may read in a database a worker writes in (monitoring
 * roles need no SELECT on it there), or
 * another, which the caller must be allowed to read.  Locked and checked.
 */
static void
open_heartbeat_table(Oid relid, HeartbeatTable *table)
{
	char	   *configured_name;
	Oid			configured = configured_heartbeat_table(OidIsValid(relid), &configured_name);

	if (!OidIsValid(relid) || relid == configured)
	{
		table->relid = configured;
		table->name = configured_name;

		/*
		 * Without SELECT only where a worker writes it: elsewhere a table of
		 * that name is anyone's, and reading it as its owner would show a
		 * monitoring role what it may not read (a database owner's table).
		 */
		if (OidIsValid(configured) && !database_has_a_worker() &&
			pg_class_aclcheck(configured, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", table->name),
					 errdetail("No alive worker writes in database \"%s\" (alive_worker.databases): the configured table is read without SELECT on it only where one does.",
							   get_database_name(MyDatabaseId))));
	}
	else
	{
		/* The privilege first: a role that may not read it may not lock it. */
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", relid)));
		table->relid = relid;
		table->name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												 get_rel_name(relid));
		if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", table->name),
					 errdetail("alive_worker reads a heartbeat table other than the configured one only for a role that may read it.")));
		LockRelationOid(relid, AccessShareLock);
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation %s was dropped while it was read", table->name)));
	}
	inspect_heartbeat_table(table);
}

typedef struct HeartbeatRead
{
	const char *query;
	Oid		   *argtypes;
	Datum	   *values;
	char	   *nulls;
	int			rc;
} HeartbeatRead;

static void
read_heartbeats_unguarded(void *arg)
{
	HeartbeatRead *read = arg;

	read->rc = SPI_execute_with_args(read->query, 2, read->argtypes, read->values, read->nulls, true, 0);
}

/*
 * Reads rows (pk, ts, message) oldest first, as the table's owner: the newest
 * max_rows, or the first max_rows after the key given (pk, or ts for a table
 * without an integer pk).  Calls emit for each row inside SPI.
 */
static void
read_heartbeats(const HeartbeatTable *table, int max_rows, bool after_null, Datum after,
				void (*emit) (HeapTuple row, TupleDesc type, void *arg), void *arg)
{
	const char *ts = table->ts_type == TIMESTAMPOID ? "ts AT TIME ZONE 'UTC'" : "ts";
	/* pk as it is, so that its index serves the ORDER BY and the WHERE. */
	const char *key = table->pk_is_integer ? "pk" : ts;
	Oid			argtypes[2] = {table->pk_is_integer ? INT8OID : TIMESTAMPTZOID, INT4OID};
	Datum		values[2] = {after, Int32GetDatum(max_rows)};
	char		nulls[2] = {after_null ? 'n' : ' ', ' '};
	char	   *query;
	TableOwnerState state;

	query = psprintf("SELECT pk, ts, message FROM"
					 " (SELECT %s AS pk, %s AS ts, %s AS message, %s AS key FROM %s"
					 "  WHERE ts IS NOT NULL AND ($1 IS NULL OR %s > $1) ORDER BY key %s LIMIT $2) h"
					 " ORDER BY key",
					 table->pk_is_integer ? "pk::int8" : "NULL::int8", ts,
					 table->message_is_text ? "message::text" : "NULL::text", key,
					 table->name, key, after_null ? "DESC" : "");

	table_owner_begin(table->owner, &state);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		/* The name, looked up again by each analysis, must still mean the table locked. */
		HeartbeatRead read = {query, argtypes, values, nulls, 0};

		table_owner_run_naming(table->relid, query, NULL, read_heartbeats_unguarded, &read);
		if (read.rc != SPI_OK_SELECT)
			elog(ERROR, "alive_worker could not read heartbeat table %s", table->name);
	}
	for (uint64 i = 0; i < SPI_processed; i++)
		emit(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, arg);
	SPI_finish();
	table_owner_end(&state);
}

static void
emit_into_tuplestore(HeapTuple row, TupleDesc type, void *arg)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;
	Datum		values[3];
	bool		nulls[3];

	for (int i = 0; i < 3; i++)
		values[i] = SPI_getbinval(row, type, i + 1, &nulls[i]);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * alive_worker.heartbeats(heartbeat_table, max_rows, after_pk, after_ts):
 * the rows of a heartbeat table (by default the configured one), through
 * read_heartbeats().
 */
Datum
alive_worker_heartbeats(PG_FUNCTION_ARGS)
{
	HeartbeatTable table;
	int			max_rows = PG_ARGISNULL(1) ? RECENT_HEARTBEATS : PG_GETARG_INT32(1);
	bool		after_null;
	Datum		after;

	if (max_rows < 0 || max_rows > MAX_HEARTBEATS_READ)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be between 0 and %d", MAX_HEARTBEATS_READ)));
	InitMaterializedSRF(fcinfo, 0);
	open_heartbeat_table(PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0), &table);
	after_null = table.pk_is_integer ? PG_ARGISNULL(2) : PG_ARGISNULL(3);
	after = after_null ? (Datum) 0 : table.pk_is_integer ? PG_GETARG_DATUM(2) : PG_GETARG_DATUM(3);
	read_heartbeats(&table, max_rows, after_null, after,
					emit_into_tuplestore, fcinfo->resultinfo);
	return (Datum) 0;
}

typedef struct NewestFirst
{
	Datum		ts[RECENT_HEARTBEATS];
	int			count;
} NewestFirst;

static void
emit_newest_first(HeapTuple row, TupleDesc type, void *arg)
{
	NewestFirst *recent = (NewestFirst *) arg;
	bool		isnull;
	Datum		ts = SPI_getbinval(row, type, 2, &isnull);

	/* Oldest first in: shift the others along, newest at the front. */
	memmove(&recent->ts[1], &recent->ts[0], recent->count * sizeof(Datum));
	recent->ts[0] = ts;			/* timestamptz is passed by value */
	recent->count++;
}

/*
 * alive_worker._configured_heartbeats(), of SQL versions 1.2 (1.3's lag()
 * reads through heartbeats()): the configured table's name and its newest
 * timestamps, newest first.
 */
Datum
alive_worker_configured_heartbeats(PG_FUNCTION_ARGS)
{
	TupleDesc	result_type;
	HeartbeatTable table;
	NewestFirst recent = {.count = 0};
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &result_type) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	open_heartbeat_table(InvalidOid, &table);
	read_heartbeats(&table, RECENT_HEARTBEATS, true, (Datum) 0, emit_newest_first, &recent);
	values[0] = CStringGetTextDatum(table.name);
	values[1] = PointerGetDatum(construct_array(recent.ts, recent.count, TIMESTAMPTZOID,
												sizeof(TimestampTz), true, TYPALIGN_DOUBLE));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_type), values, nulls)));
}
