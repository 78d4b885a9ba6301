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
#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "alive_worker.h"
#include "worker_status.h"

PG_FUNCTION_INFO_V1(alive_worker_status);
PG_FUNCTION_INFO_V1(alive_worker_start);
PG_FUNCTION_INFO_V1(alive_worker_stop);

#define STATUS_COLUMNS 23
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
		int			c = 0;

		SpinLockAcquire(&slot->mutex);
		memcpy(&copy, slot, sizeof(copy));
		SpinLockRelease(&slot->mutex);

		state = worker_state_name(copy.state);
		if (in_recovery && copy.pid == 0 && copy.state == WORKER_STARTING)
			state = "waiting for recovery to end";

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
		Assert(c == STATUS_COLUMNS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* The index of the configured worker for database, or an ERROR. */
static int
worker_index(const char *database)
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
	int			index = worker_index(database);
	WorkerStatus *slot = worker_status_slot(index);
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	WorkerState state;

	SpinLockAcquire(&slot->mutex);
	state = slot->state;
	SpinLockRelease(&slot->mutex);
	/* Only a stopped worker is gone for good; any other will run again. */
	if (state != WORKER_STOPPED)
	{
		ereport(NOTICE,
				(errmsg("the alive worker for database \"%s\" is not stopped (%s)",
						database, worker_state_name(state))));
		PG_RETURN_BOOL(false);
	}

	alive_worker_describe(&worker, index);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the alive worker for database \"%s\"", database),
				 errhint("Raise max_worker_processes.")));
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("the alive worker for database \"%s\" did not start", database)));
	PG_RETURN_BOOL(true);
}

Datum
alive_worker_stop(PG_FUNCTION_ARGS)
{
	char	   *database = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			index = worker_index(database);
	int			pid = running_pid(index);

	if (pid == 0)
	{
		ereport(NOTICE,
				(errmsg("the alive worker for database \"%s\" is not running", database)));
		PG_RETURN_BOOL(false);
	}
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
