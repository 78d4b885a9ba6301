/*-------------------------------------------------------------------------
 *
 * alive_worker.c
 *		A background worker that proves the server is alive by writing a
 *		heartbeat row ("STILL ALIVE and counting! N") into a table every
 *		interval.
 *
 * This file is the thin C shim: the settings, the worker's lifecycle and its
 * schedule.  What a tick writes is decided by the Python package
 * alive_worker, reached through a cffi embedding library that only the
 * worker process loads, so that the postmaster and client backends never map
 * libpython.  Calls from Python back into PostgreSQL go through the bridge
 * in alive_worker/_bridge.c, which turns ERRORs into Python exceptions.
 *
 * Modelled on src/test/modules/worker_spi.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "alive_worker/_compat.h"	/* what differs between majors */

#include <dlfcn.h>
#include <time.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "alive_worker/_bridge.h"
#include "alive_worker_config.h"	/* written by make: where Python lives */

ALIVE_WORKER_MODULE_MAGIC;

PGDLLEXPORT void alive_worker_main(Datum main_arg);

#define MIN_INTERVAL_MS 10
#define MAX_INTERVAL_MS (24 * 60 * 60 * 1000)
#define RESTART_DELAY_SECONDS 5

/* GUC variables */
static char *worker_database = NULL;
static char *worker_role = NULL;
static char *table_schema = NULL;
static char *table_name = NULL;
static char *heartbeat_message = NULL;
static char *tick_hook = NULL;
static int	tick_interval_ms = 10000;

/* Entry points of the embedding library, found with dlsym */
static int	(*python_start) (void);
static int	(*python_tick) (int settings_generation, int previous_tick_committed);
static void (*finish_python_call) (int result, int elevel);

/* Set by signal handlers */
static volatile sig_atomic_t got_sigterm = false;
static volatile sig_atomic_t tick_in_progress = false;

/*
 * SIGTERM: stop after the tick in flight.  A tick blocked on a lock or a slow
 * statement is cancelled, as pg_cancel_backend would, so that it rolls back
 * at once instead of holding up shutdown; the loop then exits with code 0,
 * which tells the postmaster not to restart the worker.
 */
static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	if (tick_in_progress)
	{
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);

	errno = save_errno;
}

static bool
check_name(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The name must not be empty.");
		return false;
	}
	if (strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("The name must be shorter than %d bytes.", NAMEDATALEN);
		return false;
	}
	return true;
}

static bool
check_role(char **newval, void **extra, GucSource source)
{
	/* Empty means the bootstrap superuser. */
	if (*newval != NULL && (*newval)[0] == '\0')
		return true;
	return check_name(newval, extra, source);
}

void
_PG_init(void)
{
	DefineCustomStringVariable("alive_worker.database",
							   "Database the alive worker connects to.",
							   NULL,
							   &worker_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   check_name, NULL, NULL);

	DefineCustomStringVariable("alive_worker.role",
							   "Role the alive worker runs as; empty means the bootstrap superuser.",
							   NULL,
							   &worker_role,
							   "",
							   PGC_POSTMASTER,
							   0,
							   check_role, NULL, NULL);

	DefineCustomStringVariable("alive_worker.schema",
							   "Schema of the heartbeat table.",
							   NULL,
							   &table_schema,
							   "public",
							   PGC_SIGHUP,
							   0,
							   check_name, NULL, NULL);

	DefineCustomStringVariable("alive_worker.table",
							   "Name of the heartbeat table; created if missing and the role may.",
							   NULL,
							   &table_name,
							   "log_table",
							   PGC_SIGHUP,
							   0,
							   check_name, NULL, NULL);

	DefineCustomStringVariable("alive_worker.message",
							   "Message prefix of each heartbeat row; the row reads \"<message> <N>\".",
							   NULL,
							   &heartbeat_message,
							   "STILL ALIVE and counting!",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("alive_worker.interval",
							"Time between heartbeats.",
							NULL,
							&tick_interval_ms,
							10000,
							MIN_INTERVAL_MS,
							MAX_INTERVAL_MS,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("alive_worker.hook",
							   "Python callable run in every tick after the INSERT, as module:function or /path/file.py:function; empty for none.",
							   NULL,
							   &tick_hook,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("alive_worker");

	/* Loaded by a client backend (LOAD, CREATE EXTENSION): settings only. */
	if (!process_shared_preload_libraries_in_progress)
		return;

	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
			BGWORKER_BACKEND_DATABASE_CONNECTION;
		/* A standby cannot take the INSERT: wait until recovery ends. */
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = RESTART_DELAY_SECONDS;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "alive_worker");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "alive_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "alive worker");
		snprintf(worker.bgw_type, BGW_MAXLEN, "alive worker");

		elog(DEBUG1, "alive_worker registering background worker \"%s\"",
			 worker.bgw_name);
		RegisterBackgroundWorker(&worker);
	}
}

/*
 * The embedded interpreter finds its environment from the process
 * environment before any Python runs.  Point it at the virtual environment
 * chosen at install time, and drop what the postmaster inherited: variables
 * such as PYTHONFAULTHANDLER would make Python replace PostgreSQL's signal
 * handlers, and PYTHONPATH or PYTHONHOME would pick another installation.
 */
static void
prepare_python_environment(void)
{
	extern char **environ;
	List	   *inherited = NIL;
	ListCell   *cell;

	/* Collect first: unsetenv() rewrites environ. */
	for (char **entry = environ; *entry != NULL; entry++)
	{
		if (strncmp(*entry, "PYTHON", 6) == 0)
			inherited = lappend(inherited, pnstrdup(*entry, strcspn(*entry, "=")));
	}
	foreach(cell, inherited)
		unsetenv((const char *) lfirst(cell));

	setenv("PYTHONEXECUTABLE", ALIVE_WORKER_PYTHON_EXECUTABLE, 1);
	setenv("PYTHONNOUSERSITE", "1", 1);
	setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
}

static void *
find_entry_point(void *library, const char *name)
{
	void	   *entry = dlsym(library, name);

	if (entry == NULL)
		ereport(FATAL,
				(errmsg("alive_worker library \"%s\" has no entry point \"%s\"",
						ALIVE_WORKER_PYTHON_LIBRARY, name),
				 errhint("Rebuild and reinstall alive_worker with make install.")));
	return entry;
}

/*
 * Loads the embedding library and starts Python now, outside any
 * transaction, so that a broken installation ends in one clear FATAL line
 * rather than in silent failures at every tick.
 */
static void
start_python(void)
{
	void	   *library;
	int			result;

	prepare_python_environment();

	/* RTLD_GLOBAL: extension modules such as _cffi_backend need libpython's symbols. */
	library = dlopen(ALIVE_WORKER_PYTHON_LIBRARY, RTLD_NOW | RTLD_GLOBAL);
	if (library == NULL)
		ereport(FATAL,
				(errmsg("alive_worker could not load its Python library \"%s\": %s",
						ALIVE_WORKER_PYTHON_LIBRARY, dlerror()),
				 errhint("Install alive_worker with make install, as the user who built it.")));

	python_start = find_entry_point(library, "aw_python_start");
	python_tick = find_entry_point(library, "aw_python_tick");
	finish_python_call = find_entry_point(library, "aw_finish_python_call");

	/*
	 * cffi answers 0 from every entry point when the interpreter or the
	 * package failed to start (its own message goes to stderr, which is the
	 * server log); AW_OK is never 0.
	 */
	result = python_start();
	if (result == AW_ERROR)
		finish_python_call(result, FATAL);
	if (result != AW_OK)
		ereport(FATAL,
				(errmsg("alive_worker could not start Python from \"%s\"",
						ALIVE_WORKER_PYTHON_EXECUTABLE),
				 errdetail("The library \"%s\" failed to initialise; Python's own message precedes this line.",
						   ALIVE_WORKER_PYTHON_LIBRARY),
				 errhint("Check that the server's OS user can read the virtual environment, or reinstall with make install.")));
}

static int64
monotonic_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/*
 * One tick: a transaction in which Python writes the heartbeat.  Returns
 * whether it committed.  An ERROR (from SQL, or a Python exception turned
 * into one by finish_python_call) is logged and the transaction rolled back;
 * the worker goes on at the next deadline.
 */
static bool
run_tick(int settings_generation, bool previous_committed)
{
	MemoryContext loop_context = CurrentMemoryContext;
	volatile bool committed = false;

	elog(DEBUG1, "alive_worker in main loop");
	tick_in_progress = true;

	PG_TRY();
	{
		int			result;

		/* As worker_spi: the statement timestamp must be set first. */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "alive_worker heartbeat");

		result = python_tick(settings_generation, previous_committed);
		finish_python_call(result, ERROR);
		if (result != AW_OK)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("alive_worker Python tick failed without reporting why"),
					 errhint("Python's own message, if any, is in the server's standard error.")));

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		committed = true;
	}
	PG_CATCH();
	{
		/* As a backend's error recovery: report, then abort everything. */
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(loop_context);
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();

	tick_in_progress = false;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return committed;
}

/* The role's name, for the log; the catalogs need a transaction. */
static char *
current_role_name(void)
{
	char	   *name;

	StartTransactionCommand();
	name = MemoryContextStrdup(TopMemoryContext,
							   GetUserNameFromId(GetUserId(), false));
	CommitTransactionCommand();
	return name;
}

void
alive_worker_main(Datum main_arg)
{
	int64		deadline;		/* when the current tick is due */
	uint32		wait_event;		/* what pg_stat_activity shows while asleep */
	int64		ticks_written = 0;
	int			settings_generation = 0;
	bool		previous_committed = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(worker_database,
										 worker_role[0] != '\0' ? worker_role : NULL,
										 0);
	elog(DEBUG1, "alive_worker starting worker_main");

	/* Needs shared memory, so here rather than in _PG_init. */
	wait_event = alive_worker_main_wait_event();

	start_python();

	ereport(LOG,
			(errmsg("alive_worker started: database \"%s\", role \"%s\", table %s.%s, interval %d ms",
					worker_database, current_role_name(),
					quote_identifier(table_schema), quote_identifier(table_name),
					tick_interval_ms)));

	/*
	 * Tick once at start, then on a grid of absolute deadlines on the
	 * monotonic clock.  A latch wake-up (SIGHUP, a spurious one) only makes
	 * the loop look at the clock again, so it neither adds a tick nor shifts
	 * the grid, and the time a tick takes does not add up into drift.
	 */
	deadline = monotonic_us();
	for (;;)
	{
		int64		now = monotonic_us();

		if (now < deadline)
		{
			/* Round up: waking a little late is cheaper than waking twice. */
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 (long) ((deadline - now + 999) / 1000),
							 wait_event);
			ResetLatch(MyLatch);
		}

		if (got_sigterm)
			break;

		/* Idle, there is nothing for a cancel request to cancel. */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			int			previous_interval_ms = tick_interval_ms;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			settings_generation++;
			/* A new interval counts from the last tick, not the old deadline. */
			deadline += (int64) (tick_interval_ms - previous_interval_ms) * 1000;
		}

		if (monotonic_us() < deadline)
			continue;

		previous_committed = run_tick(settings_generation, previous_committed);
		if (previous_committed)
			ticks_written++;
		if (got_sigterm)
			break;

		/* Next deadline on the grid; ticks more than an interval late are skipped. */
		deadline += (int64) tick_interval_ms * 1000;
		now = monotonic_us();
		if (now >= deadline + (int64) tick_interval_ms * 1000)
			deadline += (now - deadline) / ((int64) tick_interval_ms * 1000) *
				((int64) tick_interval_ms * 1000);
	}

	ereport(LOG,
			(errmsg("alive_worker stopping: received SIGTERM after writing %lld heartbeats",
					(long long) ticks_written)));
	proc_exit(0);
}
