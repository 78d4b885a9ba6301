/*-------------------------------------------------------------------------
 *
 * alive_worker.c
 *		A background worker that proves the server is alive by writing a
 *		heartbeat row ("STILL ALIVE and counting! N") into a table every
 *		interval.
 *
 * This file is the thin C shim, read top to bottom: _PG_init, the tick,
 * connecting, and the worker's main at the end.  What a tick writes is decided by the Python
 * package alive_worker, reached through a cffi embedding library that only
 * the worker process loads (src/python_loader.c), so that the postmaster and
 * client backends never map libpython.  Calls from Python back into
 * PostgreSQL go through the bridge in alive_worker/_bridge.c, which turns
 * ERRORs into Python exceptions.  The settings, the schedule, the hook and
 * the status slot have a file each in src/.
 *
 * Modelled on src/test/modules/worker_spi.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "alive_worker/_compat.h"	/* what differs between majors */

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "alive_worker/_bridge.h"
#include "alive_worker/_table_owner.h"
#include "alive_worker_config.h"	/* written by make: the version, for the magic */
#include "alive_worker.h"
#include "client_probe.h"
#include "connect_backoff.h"
#include "crash_guard.h"
#include "error_throttle.h"
#include "hook_runner.h"
#include "log_watch.h"
#include "python_loader.h"
#include "schedule.h"
#include "server_start.h"
#include "session_settings.h"
#include "settings.h"
#include "tick_timeout.h"
#include "worker_status.h"

ALIVE_WORKER_MODULE_MAGIC;

PGDLLEXPORT void alive_worker_main(Datum main_arg);

/* Which configured database this worker serves: its status slot */
int			worker_index = 0;
char	   *worker_database_name = NULL;
static char *worker_role_name = NULL;	/* the role's name, once connected */

/* Heartbeats committed, and ticks skipped for lateness, since the start */
int64		ticks_written = 0;
int64		ticks_skipped = 0;

/* Set by signal handlers; tick_running only by run_tick */
volatile sig_atomic_t got_sigterm = false;
static volatile sig_atomic_t tick_running = false;
/* Who sent the last SIGTERM: its PID and user ID */
static volatile sig_atomic_t sigterm_sender = 0;
static volatile sig_atomic_t sigterm_sender_uid = 0;

/*
 * SIGTERM: stop after the tick in flight.  A tick blocked on a lock or a slow
 * statement is cancelled, as pg_cancel_backend would, so that it rolls back
 * at once instead of holding up shutdown; the loop then exits with code 0,
 * which tells the postmaster not to restart the worker, or with code 1 when
 * neither stop() nor the postmaster sent it (worker_stop).  The handler is
 * installed with SA_SIGINFO, which pqsignal does not offer, for the sender.
 */
static void
handle_sigterm(int signo, siginfo_t *info, void *context)
{
	int			save_errno = errno;

	sigterm_sender = info != NULL ? info->si_pid : 0;
	sigterm_sender_uid = info != NULL ? info->si_uid : 0;
	got_sigterm = true;
	if (tick_running)
	{
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);

	errno = save_errno;
}

static void
install_sigterm_handler(void)
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_sigaction = handle_sigterm;
	action.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGTERM, &action, NULL) != 0)
		elog(FATAL, "alive_worker could not install its SIGTERM handler: %m");
}

void
_PG_init(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		settings_define_server_start();
		/* Before the startup process changes it: how the server last stopped. */
		server_start_read_control_file();
	}
	settings_define_reloadable();

	/*
	 * Loaded by a client backend (LOAD, CREATE EXTENSION without preloading):
	 * settings only; the SQL functions say that there are no workers.
	 */
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

/*
 * The worker's statements, and hooks', resolve names through
 * ALIVE_WORKER_SEARCH_PATH only: no database or role setting, and no schema
 * another role owns, changes which function, operator or table they reach
 * (docs/SECURITY.md).  A hook may SET search_path for its own statements:
 * put the worker's back before the tick's own.  A string comparison when
 * unchanged.
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
bool
worker_run_tick(int64 tick_deadline, int settings_generation, bool previous_committed)
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
	tick_running = true;
	worker_status_tick_begin(worker_index);

	PG_TRY();
	{
		int			result;

		/* As worker_spi: the statement timestamp must be set first. */
		SetCurrentStatementStartTimestamp();
		/* SPI does not arm statement_timeout: bound the whole tick here. */
		tick_timeout_begin(tick_must_end_at(tick_deadline));
		StartTransactionCommand();
		/* What a client's new session would get, read again every tick. */
		session_settings_apply();
		pin_search_path();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "alive_worker heartbeat");

		result = embedded_python.tick(settings_generation, previous_committed);
		embedded_python.finish_call(result, ERROR);
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
		log_watch_commit_begin();
		CommitTransactionCommand();
		confirmed = log_watch_commit_end(fired_before_commit);
		commit_us = monotonic_us() - commit_us;
		tick_timeout_end();
		committed = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		(void) log_watch_commit_end(true);
		tick_timeout_end();
		MemoryContextSwitchTo(loop_context);
		/* Before HOLD_INTERRUPTS: the ERROR it raises resets the count. */
		tick_timeout_explain_current_error(tick_timeout_in_force_ms());
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
	tick_running = false;
	worker_status_tick_end(worker_index, committed && confirmed,
						   monotonic_us() - started_us,
						   failed_sqlerrcode, failed_message);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return committed;
}

/*
 * The client-path probe (client_probe.c), every alive_worker.probe_interval
 * between ticks when alive_worker.probe_role names a role: a new session as
 * a client's, whose failure the status says even while heartbeats commit.
 */
static int	errcode_for_probe(const char *sqlstate);

void
worker_probe_if_due(void)
{
	static int64 next_probe_us = 0;
	ClientProbeTarget target;
	ProbeResult result;

	if (probe_role[0] == '\0' || monotonic_us() < next_probe_us)
		return;
	target.database = worker_database_name;
	target.role = probe_role;
	target.timeout_ms = probe_timeout_ms;
	pgstat_report_activity(STATE_RUNNING, "alive_worker client-path probe");
	client_probe_run(&target, &result);
	pgstat_report_activity(STATE_IDLE, NULL);
	next_probe_us = monotonic_us() + (int64) probe_interval_ms * 1000;
	/* Abandoned for SIGTERM: no verdict on the clients. */
	if (got_sigterm)
		return;
	if (!result.ok)
		ereport(WARNING,
				(errcode_for_probe(result.sqlstate),
				 errmsg("alive_worker client-path probe as role \"%s\" failed: %s",
						probe_role, result.message)));
	worker_status_probe_end(worker_index, result.ok, result.duration_us,
							result.sqlstate, result.message);
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
void
worker_publish_settings(void)
{
	char		target_table[2 * NAMEDATALEN + 8];

	snprintf(target_table, sizeof(target_table), "%s.%s",
			 quote_identifier(table_schema), quote_identifier(table_name));
	if (!worker_status_started(worker_index, worker_role_name, target_table, tick_interval_ms))
		worker_status_exit_as_duplicate(worker_database_name);
	worker_status_probe_role(worker_index, probe_role);
}

/*
 * Whether a SIGTERM came from a session of this server (pg_terminate_backend)
 * rather than from the OS: sent by a child of the postmaster, or by a process
 * of the server's OS user that is gone already (a session that terminated the
 * worker and disconnected at once must not pass for an operator's kill).
 * root's kill (the original README's `sudo kill -TERM`) and a live process
 * of the server's OS user that is no server process (a shell's kill) are
 * the OS's, which may stop the worker for good anyway.
 */
static bool
sigterm_from_a_session(pid_t sender, uid_t sender_uid)
{
	char		path[64];
	char		stat[512];
	FILE	   *file;
	size_t		length;
	char	   *after_name;
	int			parent;

	if (sender <= 0 || sender_uid == 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int) sender);
	file = fopen(path, "r");
	if (file == NULL)
		return sender_uid == geteuid();
	length = fread(stat, 1, sizeof(stat) - 1, file);
	fclose(file);
	stat[length] = '\0';
	/* "pid (name) state ppid ...": the name may hold anything but ends at the last ')' */
	after_name = strrchr(stat, ')');
	if (after_name == NULL || sscanf(after_name + 1, " %*c %d", &parent) != 1)
		return sender_uid == geteuid();
	return parent == PostmasterPid;
}

/* The probe's SQLSTATE as an error code; a refusal without one is class 08's. */
static int
errcode_for_probe(const char *sqlstate)
{
	if (strlen(sqlstate) != 5)
		return errcode(ERRCODE_CONNECTION_FAILURE);
	return errcode(MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]));
}

void
worker_stop(void)
{
	if (!worker_status_record_sigterm(worker_index, sigterm_sender,
									  sigterm_from_a_session(sigterm_sender, sigterm_sender_uid)))
	{
		ereport(LOG,
				(errmsg("alive_worker terminated by SIGTERM from PID %d after writing %lld heartbeats; "
						"it is started again in %d s",
						(int) sigterm_sender, (long long) ticks_written, WORKER_RESTART_DELAY_SECONDS),
				 errhint("To stop the worker until the next server start, use alive_worker.stop().")));
		proc_exit(1);
	}
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
bool
worker_handle_signals(void)
{
	if (got_sigterm)
		worker_stop();

	/* Idle, there is nothing for a cancel request to cancel. */
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();

	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	session_settings_reread_server_level();
	return true;
}

/* Names the settings behind a failed connection, in the FATAL's CONTEXT. */
static void
describe_connection(void *arg)
{
	if (worker_role[0] != '\0')
		errcontext("alive_worker connecting to database \"%s\" (alive_worker.database%s) as alive_worker.role = \"%s\"",
				   worker_database_name, worker_databases[0] ? "s" : "", worker_role);
	else
		errcontext("alive_worker connecting to database \"%s\" (alive_worker.database%s) as the bootstrap superuser",
				   worker_database_name, worker_databases[0] ? "s" : "");
}

static void
connect_to_database(void)
{
	ErrorContextCallback context;

	context.callback = describe_connection;
	context.arg = NULL;
	context.previous = error_context_stack;
	error_context_stack = &context;

	BackgroundWorkerInitializeConnection(worker_database_name,
										 worker_role[0] != '\0' ? worker_role : NULL,
										 0);

	error_context_stack = context.previous;
	crash_guard_connected();
	worker_status_connected(worker_index);
}

/*
 * The worker: claim the status slot, connect, start Python, then tick on
 * the schedule until SIGTERM.
 */
void
alive_worker_main(Datum main_arg)
{
	CrashGuardVerdict verdict;
	char		worker_name[16];

	worker_index = DatumGetInt32(main_arg);
	worker_database_name = list_nth(worker_status_databases(), worker_index);

	/* Before this run changes its slot: how the last one ended, for the ledger. */
	worker_status_note_previous_run(worker_index);

	/* Before unblocking signals: how the last run ended decides this one. */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	install_sigterm_handler();
	snprintf(worker_name, sizeof(worker_name), "%d", worker_index);
	crash_guard_start(worker_name, crash_limit, crash_window_s, &verdict);
	log_watch_install();
	claim_slot_to_connect(verdict.connect_failures);
	BackgroundWorkerUnblockSignals();

	/* Repeated failures to connect wait longer, rather than fill the log. */
	if (!verdict.disabled && verdict.connect_failures > 0)
	{
		wait_before_connecting(verdict.connect_failures);
		claim_slot_to_connect(verdict.connect_failures);
	}
	/* Before the database's and role's settings overlay the server's. */
	session_settings_capture_server_level();
	connect_to_database();
	elog(DEBUG1, "alive_worker starting worker_main");
	worker_role_name = current_role_name();
	worker_publish_settings();

	/*
	 * ts DEFAULT now() is stored without a time zone: write it in UTC, so
	 * that rows mean the same on every server and replica.  The search_path
	 * is pinned over ALTER DATABASE / ALTER ROLE ... SET and RESET's value.
	 */
	SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", ALIVE_WORKER_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * A database owner may ALTER DATABASE ... SET role = itself: the worker
	 * would then run as that role (and fail, or write as it).  The worker is
	 * its own role, whatever the database says; and the formats of what it
	 * reads back are PostgreSQL's defaults.
	 */
	SetConfigOption("role", "none", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("DateStyle", "ISO, MDY", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_OVERRIDE);
	schedule_init();
	tick_timeout_init();

	/* Connected even when disabled, so that pg_stat_activity shows why. */
	if (verdict.disabled)
		stay_idle_while_disabled(verdict.recent_crashes);

	/* Before any promotion: the first heartbeat then follows it at once. */
	start_python();
	hook_runner_init();
	if (wait_for_recovery_to_end())
		worker_publish_settings();

	ereport(LOG,
			(errmsg("alive_worker started: database \"%s\", role \"%s\", table %s.%s, interval %d ms",
					worker_database_name, worker_role_name,
					quote_identifier(table_schema), quote_identifier(table_name),
					tick_interval_ms)));
	run_schedule();
}
