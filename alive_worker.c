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
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/syncrep.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "alive_worker/_bridge.h"
#include "alive_worker/_table_owner.h"
#include "alive_worker_config.h"	/* written by make: where Python lives */
#include "alive_worker.h"
#include "crash_guard.h"
#include "error_throttle.h"
#include "tick_timeout.h"
#include "worker_status.h"

ALIVE_WORKER_MODULE_MAGIC;

PGDLLEXPORT void alive_worker_main(Datum main_arg);

#define MIN_INTERVAL_MS 10
#define MAX_INTERVAL_MS (24 * 60 * 60 * 1000)
#define RESTART_DELAY_SECONDS WORKER_RESTART_DELAY_SECONDS
#define MAX_CONNECT_DELAY_SECONDS 300
/* How often a worker on a hot standby looks whether recovery has ended. */
#define RECOVERY_POLL_MS 10

/* GUC variables */
static char *worker_database = NULL;
static char *worker_databases = NULL;
static char *worker_role = NULL;
static char *table_schema = NULL;
static char *table_name = NULL;
static char *heartbeat_message = NULL;
static char *tick_hook = NULL;
static int	tick_interval_ms = 10000;
static int	tick_timeout_ms = 0;
static int	retention_s = 0;
static int	crash_limit = 3;
static int	crash_window_s = 600;
static bool clock_aligned = false;
static bool back_to_back = false;

/* What a failing hook does (alive_worker.hook_failure) */
typedef enum HookFailure
{
	HOOK_FAILURE_LOG,			/* logged and counted; the heartbeat commits */
	HOOK_FAILURE_FAIL_TICK		/* the whole tick is rolled back */
} HookFailure;

static const struct config_enum_entry hook_failure_options[] = {
	{"log", HOOK_FAILURE_LOG, false},
	{"fail_tick", HOOK_FAILURE_FAIL_TICK, false},
	{NULL, 0, false}
};
static int	hook_failure = HOOK_FAILURE_LOG;

/* Entry points of the embedding library, found with dlsym */
static void (*set_interrupt_sources) (int (*cause) (void), void (*end_worker) (int cause));
static int	(*python_start) (void);
static int	(*python_tick) (int settings_generation, int previous_tick_committed);
static void (*finish_python_call) (int result, int elevel);
static int	(*python_hook) (void);
static void (*hook_begin) (void);
static int	(*hook_end) (void);

/* Which configured database this worker serves: its status slot */
static int	worker_index = 0;
static char *my_database = NULL;
static char *my_role = NULL;	/* the role's name, once connected */

/* Heartbeats committed since the worker started */
static int64 ticks_written = 0;

/* Ticks skipped because the worker was more than an interval late */
static int64 ticks_skipped = 0;

/* The sleep between ticks: latch, postmaster death, and a timer at the deadline */
static WaitEventSet *tick_wait_set = NULL;
static int	tick_timer = -1;

/* What pg_stat_activity shows while the worker sleeps */
static uint32 sleep_wait_event = PG_WAIT_EXTENSION;

/* The tick's commit is running: what a WARNING then means (log_commit_warning) */
static bool committing = false;
static bool commit_wait_cancelled = false;
static emit_log_hook_type previous_emit_log_hook = NULL;

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
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw;
	List	   *names;
	bool		valid;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	raw = pstrdup(*newval);
	valid = SplitIdentifierString(raw, ',', &names);
	if (!valid)
		GUC_check_errdetail("List syntax is invalid: write database names separated by commas, quoting those that need it.");
	else if (list_length(names) > MAX_WORKERS)
	{
		GUC_check_errdetail("At most %d databases can be listed.", MAX_WORKERS);
		valid = false;
	}
	for (int i = 0; valid && i < list_length(names); i++)
	{
		for (int j = 0; j < i; j++)
		{
			if (strcmp(list_nth(names, i), list_nth(names, j)) == 0)
			{
				GUC_check_errdetail("Database \"%s\" is listed twice.", (char *) list_nth(names, i));
				valid = false;
			}
		}
	}
	list_free(names);
	pfree(raw);
	return valid;
}

static bool
check_role(char **newval, void **extra, GucSource source)
{
	/* Empty means the bootstrap superuser. */
	if (*newval != NULL && (*newval)[0] == '\0')
		return true;
	return check_name(newval, extra, source);
}

/* The settings read once, at server start. */
static void
define_server_start_settings(void)
{
	DefineCustomStringVariable("alive_worker.database",
							   "Database the alive worker connects to.",
							   NULL,
							   &worker_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   check_name, NULL, NULL);

	DefineCustomStringVariable("alive_worker.databases",
							   "Databases to run an alive worker in, one each, separated by commas; empty means alive_worker.database alone.",
							   NULL,
							   &worker_databases,
							   "",
							   PGC_POSTMASTER,
							   GUC_LIST_INPUT,
							   check_databases, NULL, NULL);

	DefineCustomStringVariable("alive_worker.role",
							   "Role the alive worker runs as; empty means the bootstrap superuser.",
							   NULL,
							   &worker_role,
							   "",
							   PGC_POSTMASTER,
							   0,
							   check_role, NULL, NULL);
}

void
_PG_init(void)
{
	/*
	 * Loaded by a client backend (CREATE EXTENSION without preloading): the
	 * server-start settings cannot be defined any more, and there are no
	 * workers; the SQL functions say so.
	 */
	if (process_shared_preload_libraries_in_progress)
		define_server_start_settings();

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

	DefineCustomEnumVariable("alive_worker.hook_failure",
							 "What a failing hook does: log (logged and counted, the heartbeat commits) or fail_tick (the whole tick is rolled back).",
							 "With fail_tick, a heartbeat means the hook's check passed too.",
							 &hook_failure,
							 HOOK_FAILURE_LOG,
							 hook_failure_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("alive_worker.tick_timeout",
							"Longest a tick's statement may run or wait for a lock; 0 means the interval.",
							"A tick that takes longer is cancelled and rolled back, so that ticks never pile up.",
							&tick_timeout_ms,
							0,
							0,
							MAX_INTERVAL_MS,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alive_worker.retention",
							"Heartbeats older than this are deleted, a few thousand per tick; 0 keeps them all.",
							NULL,
							&retention_s,
							0,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alive_worker.crash_limit",
							"Crashes of the worker within alive_worker.crash_window after which it stays idle; 0 disables the guard.",
							"Each crash of a worker makes PostgreSQL reset every session of the cluster.",
							&crash_limit,
							3,
							0,
							1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alive_worker.crash_window",
							"Time window in which alive_worker.crash_limit crashes disable the worker.",
							NULL,
							&crash_window_s,
							600,
							1,
							7 * 24 * 60 * 60,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("alive_worker.clock_aligned",
							 "Tick at wall-clock multiples of the interval (10:00:00, 10:00:10, ...), after the first tick.",
							 "Heartbeats of servers whose clocks agree then line up, and each tick's deadline can be told from its timestamp.",
							 &clock_aligned,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("alive_worker.back_to_back",
							 "For benchmarks only: run ticks back to back, ignoring the interval.",
							 "Each tick is the production tick; only the sleep between ticks is left out.",
							 &back_to_back,
							 false,
							 PGC_SIGHUP,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("alive_worker");

	/* Loaded by a client backend (LOAD, CREATE EXTENSION): settings only. */
	if (!process_shared_preload_libraries_in_progress)
		return;

	worker_status_init();

	/*
	 * pg_upgrade runs both clusters in binary-upgrade mode, and its
	 * pg_restore drops and creates databases there: a worker connected to
	 * one would make that fail.  Single-user mode has no postmaster to start
	 * workers.  Neither is a server that writes heartbeats.
	 */
	if (IsBinaryUpgrade || !IsPostmasterEnvironment)
	{
		elog(DEBUG1, "alive_worker not starting its workers: the server runs in %s",
			 IsBinaryUpgrade ? "binary-upgrade mode" : "single-user mode");
		return;
	}

	for (int i = 0; i < list_length(worker_status_databases()); i++)
	{
		BackgroundWorker worker;

		alive_worker_describe(&worker, i);
		elog(DEBUG1, "alive_worker registering background worker \"%s\"",
			 worker.bgw_name);
		RegisterBackgroundWorker(&worker);
	}
}

void
alive_worker_describe(BackgroundWorker *worker, int index)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/*
	 * Started on a hot standby already, so that connecting and starting
	 * Python are done before a promotion, and the first heartbeat follows
	 * the end of recovery within milliseconds; the worker writes nothing
	 * until then (wait_for_recovery_to_end).  Without hot_standby the
	 * postmaster starts it when recovery ends.
	 */
	worker->bgw_start_time = BgWorkerStart_ConsistentState;
	worker->bgw_restart_time = RESTART_DELAY_SECONDS;
	worker->bgw_main_arg = Int32GetDatum(index);
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "alive_worker");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "alive_worker_main");
	snprintf(worker->bgw_name, BGW_MAXLEN, "alive worker %s",
			 (char *) list_nth(worker_status_databases(), index));
	snprintf(worker->bgw_type, BGW_MAXLEN, "alive worker");
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

static void stop_worker(void);

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
		stop_worker();
	}
	ereport(FATAL,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("alive_worker.hook = \"%s\" kept running %d ms after it was interrupted by %s",
					tick_hook, AW_INTERRUPT_GRACE_MS, hook_interrupt_cause_name(cause)),
			 errdetail("The hook caught alive_worker.hooks.Interrupted instead of returning, so the worker exits; it is started again in %d s.",
					   RESTART_DELAY_SECONDS),
			 errhint("Let alive_worker.hooks.Interrupted propagate out of the hook.")));
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
	python_hook = find_entry_point(library, "aw_python_hook");
	hook_begin = find_entry_point(library, "aw_hook_begin");
	hook_end = find_entry_point(library, "aw_hook_end");
	set_interrupt_sources = find_entry_point(library, "aw_set_interrupt_sources");

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
	set_interrupt_sources(hook_interrupt_cause, end_worker_for_hook);
}

static int64
clock_us(clockid_t clock)
{
	struct timespec now;

	clock_gettime(clock, &now);
	return (int64) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static int64
monotonic_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

/* The tick's timeout: tick_timeout, or by default the interval. */
static int
tick_timeout(void)
{
	return tick_timeout_ms > 0 ? tick_timeout_ms : tick_interval_ms;
}

/*
 * When the tick due at tick_deadline must be done, on the monotonic clock:
 * the timeout after its deadline, so that a late tick does not run into
 * the next, but at least half of it after it began.
 */
static int64
tick_must_end_at(int64 tick_deadline)
{
	int64		timeout = (int64) tick_timeout() * 1000;

	return Max(tick_deadline + timeout, monotonic_us() + timeout / 2);
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
static void
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

		hook_begin();
		result = python_hook();
		cause = hook_end();
		finish_python_call(result, ERROR);
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
		(void) hook_end();
		MemoryContextSwitchTo(tick_context);
		tick_timeout_explain_current_error(tick_timeout());
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

/*
 * Sees every message this worker logs.  A FATAL ends the run: record it in
 * the status slot, where alive_worker.workers shows it (a failed connection
 * is only ever seen here: the FATAL is raised inside
 * BackgroundWorkerInitializeConnection, and the process exits right after).
 *
 * During the tick's commit, the one WARNING PostgreSQL raises is
 * SyncRepWaitForLSN's "canceling wait for synchronous replication" when the
 * tick timeout cancels the wait: the commit is then local only.  run_tick
 * reports that as a failed tick, throttled by error_throttle.c, so the WARNING
 * itself, which would repeat at every tick, is kept out of the log.
 */
static void
watch_log(ErrorData *edata)
{
	if (edata->elevel >= FATAL)
		worker_status_record_fatal(edata);
	else if (committing && edata->elevel == WARNING && edata->sqlerrcode == ERRCODE_WARNING)
	{
		commit_wait_cancelled = true;
		edata->output_to_server = false;
	}
	if (previous_emit_log_hook)
		previous_emit_log_hook(edata);
}

/*
 * The heartbeat committed locally, but the wait for the synchronous
 * standbys that every client's commit makes was cancelled by the tick
 * timeout: clients could not commit as durably, so the tick is not OK.
 * Reported like any failed tick (once, then throttled).  Returns the
 * SQLSTATE, and the message in message.
 */
static int
report_unconfirmed_commit(int64 commit_us, char *message, size_t size)
{
	MemoryContext context = CurrentMemoryContext;
	int			sqlerrcode = 0;

	PG_TRY();
	{
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("heartbeat not confirmed by a synchronous standby: committed locally only"),
				 errdetail("The commit waited %lld ms for synchronous_standby_names = '%s', as clients' commits do, until alive_worker.tick_timeout (%d ms) cancelled the wait.",
						   (long long) (commit_us / 1000), SyncRepStandbyNames, tick_timeout()),
				 errhint("Check that the standbys named by synchronous_standby_names are connected and streaming.")));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		error_throttle_report_current_error(edata);
		FlushErrorState();
		sqlerrcode = edata->sqlerrcode;
		worker_status_clip(message, edata->message, size);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return sqlerrcode;
}

/*
 * The worker's statements, and hooks', resolve names through
 * ALIVE_WORKER_SEARCH_PATH only: no database or role setting, and no schema
 * another role owns, changes which function, operator or table they reach
 * (docs/SECURITY.md).  A hook may SET search_path for its own statements: put the
 * worker's back before the tick's own.  A string comparison when unchanged.
 */
static void
pin_search_path(void)
{
	if (strcmp(namespace_search_path, ALIVE_WORKER_SEARCH_PATH) != 0)
		SetConfigOption("search_path", ALIVE_WORKER_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);
}

/*
 * One tick: a transaction in which Python writes the heartbeat.  Returns
 * whether it committed.  An ERROR (from SQL, or a Python exception turned
 * into one by finish_python_call) is logged and the transaction rolled back;
 * the worker goes on at the next deadline.
 */
static bool
run_tick(int64 tick_deadline, int settings_generation, bool previous_committed)
{
	MemoryContext loop_context = CurrentMemoryContext;
	volatile bool committed = false;
	int64		started_us = monotonic_us();
	volatile int64 commit_us = -1;
	int			failed_sqlerrcode = 0;
	char		failed_message[ERROR_MESSAGE_SIZE] = "";
	bool		confirmed = true;
	volatile bool fired_before_commit = false;

	elog(DEBUG1, "alive_worker in main loop");
	tick_in_progress = true;
	worker_status_tick_begin(worker_index);

	PG_TRY();
	{
		int			result;

		/* As worker_spi: the statement timestamp must be set first. */
		SetCurrentStatementStartTimestamp();
		/* SPI does not arm statement_timeout: bound the whole tick here. */
		tick_timeout_begin(tick_must_end_at(tick_deadline));
		StartTransactionCommand();
		pin_search_path();
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
		if (tick_hook[0] != '\0')
			run_hook();

		SPI_finish();
		PopActiveSnapshot();

		/*
		 * The commit: the WAL flush and, with synchronous_standby_names, the
		 * wait for the standbys, which the view shows as its own state.
		 */
		worker_status_committing(worker_index);
		fired_before_commit = tick_timeout_fired();
		commit_us = monotonic_us();
		committing = true;
		commit_wait_cancelled = false;
		CommitTransactionCommand();
		committing = false;
		commit_us = monotonic_us() - commit_us;

		/*
		 * A commit cancelled by the tick timeout while it waited for the
		 * synchronous standbys returns as if all went well (the cancel is
		 * consumed, with a WARNING): the heartbeat is local only.  Told by
		 * the timer having fired during the commit and its cancel request
		 * gone; an interrupt acted on anywhere else in the commit would have
		 * raised an ERROR instead.  (Before the commit, Python may have
		 * caught a cancel: retention does, and halves its batch.)
		 */
		if (commit_wait_cancelled ||
			(!fired_before_commit && tick_timeout_fired() &&
			 !QueryCancelPending && !got_sigterm))
			confirmed = false;
		tick_timeout_end();
		committed = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		committing = false;
		tick_timeout_end();
		MemoryContextSwitchTo(loop_context);
		/* Before HOLD_INTERRUPTS: the ERROR it raises resets the count. */
		tick_timeout_explain_current_error(tick_timeout());
		/* As a backend's error recovery: report, then abort everything. */
		HOLD_INTERRUPTS();
		edata = CopyErrorData();
		if (got_sigterm && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ereport(LOG,
					(errmsg("alive_worker tick in flight cancelled by SIGTERM and rolled back")));
		else
			error_throttle_report_current_error(edata);
		FlushErrorState();
		AbortOutOfAnyTransaction();
		RESUME_INTERRUPTS();
		failed_sqlerrcode = edata->sqlerrcode;
		strlcpy(failed_message, edata->message ? edata->message : "", sizeof(failed_message));
		FreeErrorData(edata);
	}
	PG_END_TRY();

	if (commit_us >= 0)
		worker_status_commit_took(worker_index, commit_us);
	if (committed && !confirmed && !got_sigterm)
		failed_sqlerrcode = report_unconfirmed_commit(commit_us, failed_message,
													  sizeof(failed_message));
	else if (committed)
		error_throttle_tick_succeeded();
	tick_in_progress = false;
	worker_status_tick_end(worker_index, committed && confirmed,
						   monotonic_us() - started_us,
						   failed_sqlerrcode, failed_message);
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

/* What alive_worker.status() shows of this worker's settings. */
static void
publish_settings(void)
{
	char		target_table[2 * NAMEDATALEN + 8];

	snprintf(target_table, sizeof(target_table), "%s.%s",
			 quote_identifier(table_schema), quote_identifier(table_name));
	if (!worker_status_started(worker_index, my_role, target_table, tick_interval_ms))
	{
		/* Exit code 0: the postmaster does not start this one again. */
		ereport(LOG,
				(errmsg("alive_worker for database \"%s\" exiting: another alive worker serves it",
						my_database)));
		proc_exit(0);
	}
}

static void
stop_worker(void)
{
	WorkerStatus *slot = worker_status_slot(worker_index);
	char		detail[ERROR_MESSAGE_SIZE];

	/* Who asked, where stop() said so; else any SIGTERM. */
	SpinLockAcquire(&slot->mutex);
	if (slot->stop_requested_by != 0)
		snprintf(detail, sizeof(detail),
				 "stopped by alive_worker.stop() from PID %d (role \"%s\")",
				 slot->stop_requested_by, slot->stop_requested_role);
	else
		strlcpy(detail, "stopped by SIGTERM (pg_terminate_backend, or a signal from the OS)",
				sizeof(detail));
	SpinLockRelease(&slot->mutex);
	worker_status_set_state_detail(worker_index, WORKER_STOPPED, detail);
	ereport(LOG,
			(errmsg("alive_worker stopping: received SIGTERM after writing %lld heartbeats",
					(long long) ticks_written),
			 ticks_skipped > 0 ?
			 errdetail("%lld ticks were skipped because the worker was more than an interval late.",
					   (long long) ticks_skipped) : 0));
	proc_exit(0);
}

/*
 * Acts on signals: SIGTERM stops the worker, SIGHUP reloads the settings.
 * Returns whether the settings were reloaded.
 */
static bool
handle_signals(void)
{
	if (got_sigterm)
		stop_worker();

	/* Idle, there is nothing for a cancel request to cancel. */
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();

	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

/*
 * Sleeps until the latch is set or timeout_ms passes (-1: no timeout), then
 * acts on signals.  Returns whether the settings were reloaded.
 */
static bool
sleep_and_handle_signals(long timeout_ms)
{
	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
					 (timeout_ms >= 0 ? WL_TIMEOUT : 0),
					 timeout_ms, sleep_wait_event);
	ResetLatch(MyLatch);
	return handle_signals();
}

/*
 * The wait between ticks: the latch, postmaster death, and a timerfd armed
 * at the deadline.  WaitLatch takes whole milliseconds, and the kernel adds
 * slack to such timeouts (0.1% of the timeout, 10 ms at 10 s), so a
 * deadline kept in microseconds would be missed by up to a millisecond and
 * more; an absolute timer on the monotonic clock wakes the worker at the
 * deadline itself.
 */
static void
create_tick_wait_set(void)
{
	tick_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (tick_timer < 0)
		ereport(FATAL,
				(errmsg("alive_worker could not create its tick timer: %m")));
	tick_wait_set = alive_worker_create_wait_event_set(3);
	AddWaitEventToSet(tick_wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(tick_wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(tick_wait_set, WL_SOCKET_READABLE, tick_timer, NULL, NULL);
}

/*
 * Sleeps until the monotonic clock reaches deadline (in microseconds) or the
 * latch is set, then acts on signals.  Returns whether the settings were
 * reloaded.
 *
 * The timer repeats every interval, so on the usual path, where the next
 * deadline is the last plus the interval, it need not be set again; any
 * other deadline (a late tick, a skip, a reload, clock alignment) sets it.
 */
static bool
sleep_until(int64 deadline)
{
	static int64 timer_next = -1;	/* when the timer expires next */
	static int64 timer_period = 0;
	int64		period = (int64) tick_interval_ms * 1000;
	WaitEvent	event;

	if (deadline != timer_next || period != timer_period)
	{
		struct itimerspec at = alive_worker_timer_spec(deadline, period);

		if (timerfd_settime(tick_timer, TFD_TIMER_ABSTIME, &at, NULL) != 0)
			ereport(FATAL,
					(errmsg("alive_worker could not set its tick timer: %m")));
		timer_next = deadline;
		timer_period = period;
	}

	if (WaitEventSetWait(tick_wait_set, -1, &event, 1, sleep_wait_event) == 1 &&
		(event.events & WL_SOCKET_READABLE))
	{
		uint64		expirations;

		/* Drain the timer, which would stay readable otherwise. */
		if (read(tick_timer, &expirations, sizeof(expirations)) == sizeof(expirations))
			timer_next += (int64) expirations * period;
		else if (errno != EAGAIN)
			elog(DEBUG1, "alive_worker could not read its tick timer: %m");
	}
	ResetLatch(MyLatch);
	return handle_signals();
}

/* The crash guard holds: do nothing but wait for SIGTERM or a new limit. */
static void
stay_idle_while_disabled(int recent_crashes)
{
	ereport(WARNING,
			(errmsg("alive_worker disabled by its crash guard: the worker crashed %d times within %d s",
					recent_crashes, crash_window_s),
			 errdetail("Each crash of the worker makes PostgreSQL reset every session of the cluster, so it stays idle instead of writing heartbeats."),
			 errhint("Fix the cause of the crashes (see the log), then restart the server; or set alive_worker.crash_limit to 0 or above %d and reload to retry now. The record is in \"%s\".",
					 recent_crashes, crash_guard_record_path())));
	pgstat_report_activity(STATE_IDLE, "disabled by crash guard");
	{
		char		detail[ERROR_MESSAGE_SIZE];

		snprintf(detail, sizeof(detail),
				 "the worker crashed %d times within alive_worker.crash_window (%d s); record in \"%s\"",
				 recent_crashes, crash_window_s, crash_guard_record_path());
		worker_status_set_state_detail(worker_index, WORKER_DISABLED, detail);
	}
	for (;;)
	{
		if (sleep_and_handle_signals(-1) && !crash_guard_still_disabled(crash_limit))
		{
			ereport(LOG,
					(errmsg("alive_worker crash guard lifted by alive_worker.crash_limit = %d",
							crash_limit)));
			pgstat_report_activity(STATE_IDLE, NULL);
			worker_status_set_state(worker_index, WORKER_STARTING);
			return;
		}
	}
}

/*
 * How long a worker waits, once started again, before its next attempt to
 * connect after failed_attempts failures in a row.
 */
static long
connect_delay_seconds(int failed_attempts)
{
	int			doublings = Min(failed_attempts - 1, 6);

	if (failed_attempts <= 0)
		return 0;
	return Min(RESTART_DELAY_SECONDS * ((1L << doublings) - 1),
			   MAX_CONNECT_DELAY_SECONDS - RESTART_DELAY_SECONDS);
}

/*
 * Each failed attempt to connect is a FATAL exit, retried after the restart
 * delay; after repeated failures, wait longer before the next attempt.
 */
static void
wait_before_connecting(int failed_attempts)
{
	long		delay_s = connect_delay_seconds(failed_attempts);
	int64		until;

	if (delay_s <= 0)
		return;
	worker_status_backing_off(worker_index,
							  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_s * 1000));
	ereport(LOG,
			(errmsg("alive_worker waiting %ld s more before connecting again, after %d failed attempts",
					delay_s, failed_attempts)));
	until = monotonic_us() + (int64) delay_s * 1000000;
	for (int64 now = monotonic_us(); now < until; now = monotonic_us())
		(void) sleep_and_handle_signals((long) ((until - now) / 1000) + 1);
}

/*
 * Claims the status slot before an attempt to connect, so that the view
 * shows the attempt and its FATAL.  Should it fail, the next comes after the
 * restart delay and the wait for one more failure.
 */
static void
claim_slot_to_connect(int earlier_failures)
{
	long		next_in_s = RESTART_DELAY_SECONDS + connect_delay_seconds(earlier_failures + 1);

	if (!worker_status_connecting(worker_index, earlier_failures,
								  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), next_in_s * 1000)))
	{
		/* Exit code 0: the postmaster does not start this one again. */
		ereport(LOG,
				(errmsg("alive_worker for database \"%s\" exiting: another alive worker serves it",
						my_database)));
		proc_exit(0);
	}
}

/* Names the settings behind a failed connection, in the FATAL's CONTEXT. */
static void
describe_connection(void *arg)
{
	if (worker_role[0] != '\0')
		errcontext("alive_worker connecting to database \"%s\" (alive_worker.database%s) as alive_worker.role = \"%s\"",
				   my_database, worker_databases[0] ? "s" : "", worker_role);
	else
		errcontext("alive_worker connecting to database \"%s\" (alive_worker.database%s) as the bootstrap superuser",
				   my_database, worker_databases[0] ? "s" : "");
}

static void
connect_to_database(void)
{
	ErrorContextCallback context;

	context.callback = describe_connection;
	context.arg = NULL;
	context.previous = error_context_stack;
	error_context_stack = &context;

	BackgroundWorkerInitializeConnection(my_database,
										 worker_role[0] != '\0' ? worker_role : NULL,
										 0);

	error_context_stack = context.previous;
	crash_guard_connected();
	worker_status_connected(worker_index);
}

/*
 * The deadline of the tick after the one due at tick_deadline: one interval
 * later, or, with alive_worker.clock_aligned, the next wall-clock multiple of
 * the interval at least half an interval later (the first tick, at start,
 * is off the grid; on it, that is one interval later).  Kept on the
 * monotonic clock: only the grid's phase comes from the wall clock.
 */
static int64
next_deadline(int64 tick_deadline)
{
	int64		interval = (int64) tick_interval_ms * 1000;
	int64		wall;

	if (!clock_aligned)
		return tick_deadline + interval;
	/* The wall-clock time of tick_deadline + interval / 2. */
	wall = clock_us(CLOCK_REALTIME) - monotonic_us() + tick_deadline + interval / 2;
	return tick_deadline + interval / 2 + (interval - wall % interval);
}

/* Ticks on the grid of deadlines until SIGTERM. */
static void
run_schedule(void)
{
	int64		tick_deadline;	/* when the last tick was due */
	int64		deadline;		/* when the next tick is due */
	int64		skipped;
	int			settings_generation = 0;
	bool		previous_committed = false;

	/*
	 * Tick once at start, then on a grid of absolute deadlines on the
	 * monotonic clock.  A latch wake-up (SIGHUP, a spurious one) only makes
	 * the loop look at the clock again, so it neither adds a tick nor shifts
	 * the grid, and the time a tick takes does not add up into drift.
	 */
	deadline = monotonic_us();
	tick_deadline = deadline;
	for (;;)
	{
		bool		reloaded;

		/* Back to back (benchmarks only), the deadline is always now. */
		if (back_to_back || monotonic_us() >= deadline)
			reloaded = handle_signals();
		else
			reloaded = sleep_until(deadline);
		if (reloaded)
		{
			settings_generation++;
			publish_settings();
			/* A new interval counts from the last tick, not the old deadline. */
			deadline = next_deadline(tick_deadline);
		}
		if (back_to_back)
			deadline = monotonic_us();
		else if (monotonic_us() < deadline)
			continue;

		tick_deadline = deadline;
		previous_committed = run_tick(tick_deadline, settings_generation, previous_committed);
		if (previous_committed)
			ticks_written++;
		if (got_sigterm)
			stop_worker();

		/* Next deadline on the grid; ticks more than an interval late are skipped. */
		deadline = next_deadline(tick_deadline);
		skipped = 0;
		if (!back_to_back)
		{
			int64		interval = (int64) tick_interval_ms * 1000;
			int64		late = monotonic_us() - deadline;

			if (late >= interval)
			{
				skipped = late / interval;
				ticks_skipped += skipped;
				deadline += skipped * interval;
			}
		}
		worker_status_schedule(worker_index,
							   GetCurrentTimestamp() + (deadline - monotonic_us()), skipped);
		/* Now, while idle, rather than at the start of the next tick. */
		tick_timeout_set(tick_must_end_at(deadline));
	}
}

/*
 * On a hot standby: writes nothing until recovery ends.  Its slot stays
 * "starting", which the status view shows on a standby as "waiting for
 * recovery to end".  No signal reaches a background worker at promotion: it
 * looks every RECOVERY_POLL_MS, a read of shared memory.  Returns whether it
 * waited (settings reloaded meanwhile are published after).
 */
static bool
wait_for_recovery_to_end(void)
{
	if (!RecoveryInProgress())
		return false;
	ereport(LOG,
			(errmsg("alive_worker waiting for recovery to end: database \"%s\", no heartbeat before promotion",
					my_database)));
	worker_status_set_state(worker_index, WORKER_STARTING);
	pgstat_report_activity(STATE_IDLE, "waiting for recovery to end");
	while (RecoveryInProgress())
		(void) sleep_and_handle_signals(RECOVERY_POLL_MS);
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

void
alive_worker_main(Datum main_arg)
{
	CrashGuardVerdict verdict;
	char		worker_name[16];

	worker_index = DatumGetInt32(main_arg);
	my_database = list_nth(worker_status_databases(), worker_index);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	snprintf(worker_name, sizeof(worker_name), "%d", worker_index);
	crash_guard_start(worker_name, crash_limit, crash_window_s, &verdict);
	previous_emit_log_hook = emit_log_hook;
	emit_log_hook = watch_log;

	claim_slot_to_connect(verdict.connect_failures);
	BackgroundWorkerUnblockSignals();

	if (!verdict.disabled && verdict.connect_failures > 0)
	{
		wait_before_connecting(verdict.connect_failures);
		claim_slot_to_connect(verdict.connect_failures);
	}
	connect_to_database();
	elog(DEBUG1, "alive_worker starting worker_main");
	/* Needs shared memory, so here rather than in _PG_init. */
	sleep_wait_event = alive_worker_main_wait_event();
	my_role = current_role_name();
	publish_settings();

	/*
	 * ts DEFAULT now() is stored without a time zone: write it in UTC, so
	 * that rows mean the same on every server and replica.
	 */
	SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_OVERRIDE);
	/* Over ALTER DATABASE / ALTER ROLE ... SET search_path, and RESET's value. */
	SetConfigOption("search_path", ALIVE_WORKER_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);

	create_tick_wait_set();
	tick_timeout_init();

	/* Connected even when disabled, so that pg_stat_activity shows why. */
	if (verdict.disabled)
		stay_idle_while_disabled(verdict.recent_crashes);

	start_python();
	if (wait_for_recovery_to_end())
		publish_settings();

	ereport(LOG,
			(errmsg("alive_worker started: database \"%s\", role \"%s\", table %s.%s, interval %d ms",
					my_database, my_role,
					quote_identifier(table_schema), quote_identifier(table_name),
					tick_interval_ms)));

	run_schedule();
}
