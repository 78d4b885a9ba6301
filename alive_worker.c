/*-------------------------------------------------------------------------
 *
 * alive_worker.c
 *		A background worker that proves the server is alive by writing a
 *		heartbeat row ("STILL ALIVE and counting! N") into a table every
 *		interval.
 *
 * This file is the shim that owns the worker process, read top to bottom:
 * _PG_init, then the worker's main (start, connect, the loop), then the
 * steps the loop takes in order: the tick, the hook, the probe, the sleep,
 * signals, and the one way out, worker_exit (worker_exit_fatal for what
 * the worker cannot go on without, which the leaves return).  Every piece
 * of the worker's state is in the struct Worker below; the helpers in src/
 * are leaves that take what they need as arguments and return what
 * happened, and never call back in here.
 *
 * What a tick writes is decided by the Python package alive_worker, reached
 * through a cffi embedding library that only the worker process loads
 * (src/python_loader.c), so that the postmaster and client backends never
 * map libpython.  Calls from Python back into PostgreSQL go through the
 * bridge in alive_worker/_bridge.c, which turns ERRORs into Python
 * exceptions (docs/DEVELOPMENT.md, "The C/Python boundary").
 *
 * Modelled on src/test/modules/worker_spi.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "alive_worker/_compat.h"	/* what differs between majors */

#include "access/xact.h"
#include "access/xlog.h"
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
#include "utils/timestamp.h"

#include "alive_worker/_bridge.h"
#include "alive_worker/_table_owner.h"
#include "alive_worker_config.h"	/* written by make: the version, for the magic */
#include "client_probe.h"
#include "connect_backoff.h"
#include "crash_guard.h"
#include "disk_space.h"
#include "error_throttle.h"
#include "hook_runner.h"
#include "log_watch.h"
#include "python_loader.h"
#include "schedule.h"
#include "server_start.h"
#include "session_settings.h"
#include "settings.h"
#include "sigterm_sender.h"
#include "tick_timeout.h"
#include "worker_failure.h"
#include "worker_status.h"

ALIVE_WORKER_MODULE_MAGIC;

PGDLLEXPORT void alive_worker_main(Datum main_arg);

/* How often the worker reads the disk space, at most */
#define DISK_READ_PERIOD_US 1000000

/* How often a worker on a hot standby looks whether recovery has ended. */
#define RECOVERY_POLL_MS 10

/* At most this long for the last heartbeat before a shutdown (the shutdown waits). */
#define LAST_HEARTBEAT_TIMEOUT_MS 500

/*
 * The running worker: everything it knows across ticks.  Its status slot
 * (worker_status.c) is what it publishes of this for other sessions.
 */
typedef struct Worker
{
	const char *database;		/* the configured database it serves */
	char	   *role_name;		/* its role's name, once connected */

	/* Heartbeats committed, and ticks skipped for lateness, since the start */
	int64		ticks_written;
	int64		ticks_skipped;

	/* The schedule: when the last tick was due, when the next is */
	int64		tick_deadline;
	int64		deadline;
	bool		previous_committed; /* the last tick's commit, told to Python */
	int64		next_probe_at;	/* the client-path probe's, monotonic */
	int64		next_disk_read_at;

	/*
	 * What Python gets (alive_worker/_bridge.h): the settings' snapshot,
	 * taken at start and after each reload; the facts of this start, once
	 * before the first tick; and each tick, handed over and handed back.
	 */
	aw_settings settings;
	aw_start_facts start_facts;
	aw_tick		tick;

	/* Set by the SIGTERM handler; tick_running only by run_tick */
	volatile sig_atomic_t got_sigterm;
	volatile sig_atomic_t tick_running;
	volatile sig_atomic_t sigterm_sender;	/* who sent it: PID, user ID */
	volatile sig_atomic_t sigterm_sender_uid;
} Worker;

static Worker worker;

static void handle_sigterm(int signo, siginfo_t *info, void *context);
static void install_sigterm_handler(void);
static bool claim_slot_to_connect(int index, int earlier_failures);
static void wait_before_connecting(int failed_attempts);
static void connect_to_database(void);
static char *current_role_name(void);
static void publish_settings(void);
static void set_session_for_heartbeats(void);
static void stay_idle_while_disabled(int recent_crashes);
static bool wait_for_recovery_to_end(void);
static bool run_tick(int64 tick_deadline, bool last_before_shutdown);
static void write_last_heartbeat_if_shutting_down(void);
static int	call_python_tick(void);
static void probe_if_due(void);
static int	errcode_for_probe(const char *sqlstate);
static void read_disk_space_if_due(void);
static void schedule_next_tick(void);
static bool sleep_until_deadline(int64 deadline);
static bool sleep_ms(long timeout_ms);
static bool act_on_signals(void);
static void stop_on_sigterm(void);
static void stop_as_duplicate(void);
static void worker_exit(int code);
static void worker_exit_fatal(const WorkerFailure *failure);
static void worker_exit_on_errno(const char *what);

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
 * The worker: claim the status slot, connect, start Python, then tick on
 * the grid of deadlines until SIGTERM.
 */
void
alive_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	CrashGuardVerdict verdict;
	char		worker_name[16];
	aw_worker_flags flags;
	WorkerFailure failure;

	/* ---- start ---- */
	worker.database = list_nth(worker_status_databases(), index);

	/* Before this run changes its slot: how the last one ended, for the ledger. */
	worker_status_note_previous_run(index);

	/* Before unblocking signals: how the last run ended decides this one. */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	install_sigterm_handler();
	snprintf(worker_name, sizeof(worker_name), "%d", index);
	crash_guard_start(worker_name, crash_limit, crash_window_s, &verdict);
	log_watch_install();
	/* From here on, every update of the status is of this slot. */
	if (!claim_slot_to_connect(index, verdict.connect_failures))
		stop_as_duplicate();
	BackgroundWorkerUnblockSignals();

	/* ---- connect ---- */
	/* Repeated failures to connect wait longer, rather than fill the log. */
	if (!verdict.disabled && verdict.connect_failures > 0)
	{
		wait_before_connecting(verdict.connect_failures);
		if (!claim_slot_to_connect(index, verdict.connect_failures))
			stop_as_duplicate();
	}
	/* Before the database's and role's settings overlay the server's. */
	session_settings_capture_server_level();
	connect_to_database();
	elog(DEBUG1, "alive_worker starting worker_main");
	worker.role_name = current_role_name();
	publish_settings();
	set_session_for_heartbeats();
	if (!schedule_init())
		worker_exit_on_errno("create its tick timer");
	if (!tick_timeout_init())
		worker_exit_on_errno("create its tick timeout timer");

	/* Connected even when disabled, so that pg_stat_activity shows why. */
	if (verdict.disabled)
	{
		stay_idle_while_disabled(verdict.recent_crashes);
		/* Lifted by a reload, which may have changed more. */
		publish_settings();
	}

	/* Before any promotion: the first heartbeat then follows it at once. */
	flags.stop_requested = &worker.got_sigterm;
	flags.timeout_fired = tick_timeout_fired_flag();
	if (!start_python(&worker.settings, &flags, &failure))
		worker_exit_fatal(&failure);
	if (wait_for_recovery_to_end())
		publish_settings();
	/* For the ledger's first events: how this worker came to start. */
	server_start_describe(&worker.start_facts);

	ereport(LOG,
			(errmsg("alive_worker started: database \"%s\", role \"%s\", table %s.%s, interval %d ms",
					worker.database, worker.role_name,
					quote_identifier(table_schema), quote_identifier(table_name),
					tick_interval_ms)));

	/* ---- the loop ---- */

	/*
	 * Tick once at start, then on a grid of absolute deadlines on the
	 * monotonic clock.  A latch wake-up (SIGHUP, a spurious one) only makes
	 * the loop look at the clock again, so it neither adds a tick nor shifts
	 * the grid, and the time a tick takes does not add up into drift.
	 */
	worker.deadline = monotonic_us();
	worker.tick_deadline = worker.deadline;
	for (;;)
	{
		bool		reloaded;

		/* Sleep until the deadline, then act on signals (SIGTERM stops here). */
		if (back_to_back || monotonic_us() >= worker.deadline)
			reloaded = act_on_signals();
		else
			reloaded = sleep_until_deadline(worker.deadline);
		if (reloaded)
		{
			publish_settings();
			/* A new interval counts from the last tick, not the old deadline. */
			worker.deadline = schedule_next_deadline(worker.tick_deadline, tick_interval_ms,
													 clock_aligned);
		}
		/* Back to back (benchmarks only), the deadline is always now. */
		if (back_to_back)
			worker.deadline = monotonic_us();
		else if (monotonic_us() < worker.deadline)
			continue;

		/* The tick, and the hook inside it. */
		worker.tick_deadline = worker.deadline;
		worker.previous_committed = run_tick(worker.tick_deadline, false);
		if (worker.previous_committed)
			worker.ticks_written++;
		stop_on_sigterm();

		/* Between ticks, with its own deadline within alive_worker.probe_timeout. */
		probe_if_due();
		stop_on_sigterm();
		read_disk_space_if_due();

		schedule_next_tick();
	}
}

/* ---- connect ---- */

/*
 * Claims the status slot before an attempt to connect, so that the view
 * shows the attempt and its FATAL.  Should it fail, the next comes after the
 * restart delay and the wait for one more failure.  Returns false if
 * another worker holds the slot.
 */
static bool
claim_slot_to_connect(int index, int earlier_failures)
{
	long		next_in_s = connect_retry_in_seconds(earlier_failures, WORKER_RESTART_DELAY_SECONDS);

	return worker_status_connecting(index, earlier_failures,
									TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																next_in_s * 1000));
}

/*
 * Each failed attempt to connect is a FATAL exit, retried after the restart
 * delay; after repeated failures, wait longer before the next attempt.
 */
static void
wait_before_connecting(int failed_attempts)
{
	long		delay_s = connect_delay_seconds(failed_attempts, WORKER_RESTART_DELAY_SECONDS);
	int64		until;

	if (delay_s <= 0)
		return;
	worker_status_backing_off(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_s * 1000));
	ereport(LOG,
			(errmsg("alive_worker waiting %ld s more before connecting again, after %d failed attempts",
					delay_s, failed_attempts)));
	until = monotonic_us() + (int64) delay_s * 1000000;
	for (int64 now = monotonic_us(); now < until; now = monotonic_us())
		(void) sleep_ms((long) ((until - now) / 1000) + 1);
}

/* Names the settings behind a failed connection, in the FATAL's CONTEXT. */
static void
describe_connection(void *arg)
{
	if (worker_role[0] != '\0')
		errcontext("alive_worker connecting to database \"%s\" (alive_worker.database%s) as alive_worker.role = \"%s\"",
				   worker.database, worker_databases[0] ? "s" : "", worker_role);
	else
		errcontext("alive_worker connecting to database \"%s\" (alive_worker.database%s) as the bootstrap superuser",
				   worker.database, worker_databases[0] ? "s" : "");
}

static void
connect_to_database(void)
{
	ErrorContextCallback context;

	context.callback = describe_connection;
	context.arg = NULL;
	context.previous = error_context_stack;
	error_context_stack = &context;

	BackgroundWorkerInitializeConnection(worker.database,
										 worker_role[0] != '\0' ? worker_role : NULL,
										 0);

	error_context_stack = context.previous;
	crash_guard_connected();
	worker_status_connected();
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

/*
 * At start and after each reload: what alive_worker.status() shows of this
 * worker's settings, and the snapshot of them Python acts on (it reads no
 * setting of ours again; the strings are the server's until the next
 * reload).
 */
static void
publish_settings(void)
{
	char		target_table[2 * NAMEDATALEN + 8];

	snprintf(target_table, sizeof(target_table), "%s.%s",
			 quote_identifier(table_schema), quote_identifier(table_name));
	if (!worker_status_started(worker.role_name, target_table, tick_interval_ms))
		stop_as_duplicate();
	worker_status_probe_role(probe_role);

	worker.settings.generation++;
	worker.settings.database = worker_database;
	worker.settings.role = worker_role;
	worker.settings.schema = table_schema;
	worker.settings.table = table_name;
	worker.settings.message = heartbeat_message;
	worker.settings.hook = tick_hook;
	worker.settings.probe_role = probe_role;
	worker.settings.interval_ms = tick_interval_ms;
	worker.settings.retention_s = retention_s;
	worker.settings.hook_memory_limit_kb = hook_memory_limit_kb;
}

/*
 * The session every tick runs in.  ts DEFAULT now() is stored without a
 * time zone: write it in UTC, so that rows mean the same on every server
 * and replica.  The search_path is pinned over ALTER DATABASE / ALTER ROLE
 * ... SET and RESET's value.
 */
static void
set_session_for_heartbeats(void)
{
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
}

/* The crash guard holds: do nothing but wait for SIGTERM or a new limit. */
static void
stay_idle_while_disabled(int recent_crashes)
{
	char		detail[ERROR_MESSAGE_SIZE];

	ereport(WARNING,
			(errmsg("alive_worker disabled by its crash guard: the worker crashed %d times within %d s",
					recent_crashes, crash_window_s),
			 errdetail("Each crash of the worker makes PostgreSQL reset every session of the cluster, so it stays idle instead of writing heartbeats."),
			 errhint("Fix the cause of the crashes (see the log), then restart the server; or set alive_worker.crash_limit to 0 or above %d and reload to retry now. The record is in \"%s\".",
					 recent_crashes, crash_guard_record_path())));
	pgstat_report_activity(STATE_IDLE, "disabled by crash guard");
	snprintf(detail, sizeof(detail),
			 "the worker crashed %d times within alive_worker.crash_window (%d s); record in \"%s\"",
			 recent_crashes, crash_window_s, crash_guard_record_path());
	worker_status_set_state_detail(WORKER_DISABLED, detail);
	for (;;)
	{
		if (sleep_ms(-1) && !crash_guard_still_disabled(crash_limit))
		{
			ereport(LOG,
					(errmsg("alive_worker crash guard lifted by alive_worker.crash_limit = %d",
							crash_limit)));
			pgstat_report_activity(STATE_IDLE, NULL);
			worker_status_enter(WORKER_STARTING);
			return;
		}
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
					worker.database)));
	worker_status_enter(WORKER_STARTING);
	pgstat_report_activity(STATE_IDLE, "waiting for recovery to end");
	while (RecoveryInProgress())
		(void) sleep_ms(RECOVERY_POLL_MS);
	server_start_promoted();
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

/* ---- the tick ---- */

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
 * The tick's one call into Python: what it needs, handed over in
 * worker.tick, and what it hands back, written to the status here.
 */
static int
call_python_tick(void)
{
	aw_tick    *tick = &worker.tick;
	int			result;

	tick->heartbeat_number = worker.ticks_written + 1;
	tick->previous_committed = worker.previous_committed;
	tick->settings = &worker.settings;
	tick->start = &worker.start_facts;
	if (probe_role[0] != '\0')
	{
		bool		probing;
		bool		failing;
		TimestampTz last_probe_at;
		TimestampTz last_ok_at;

		worker_status_probe_outcome(&probing, &failing, &last_probe_at, &last_ok_at,
									tick->probe.sqlstate, tick->probe.message,
									sizeof(tick->probe.message));
		tick->probe.probing = probing;
		tick->probe.failing = failing;
		tick->probe.last_probe_at = server_start_unix_seconds(last_probe_at);
		tick->probe.last_ok_at = server_start_unix_seconds(last_ok_at);
	}
	else
		tick->probe.probing = 0;
	tick->retention_reported = 0;

	result = embedded_python.tick(tick);

	/* Even if the tick failed: retention's verdict stands. */
	if (tick->retention_reported)
	{
		tick->retention_error[sizeof(tick->retention_error) - 1] = '\0';
		worker_status_retention_error(tick->retention_error);
	}
	return result;
}

/*
 * One tick: a transaction in which Python writes the heartbeat, and the
 * hook runs after it.  Returns whether it committed.  An ERROR (from SQL,
 * or a Python exception turned into one by finish_call) is logged and the
 * transaction rolled back; the worker goes on at the next deadline.
 */
static bool
run_tick(int64 tick_deadline, bool last_before_shutdown)
{
	MemoryContext loop_context = CurrentMemoryContext;
	volatile bool committed = false;
	int64		started_us = monotonic_us();
	volatile int64 commit_us = -1;
	int			failed_sqlerrcode = 0;
	char		failed_message[ERROR_MESSAGE_SIZE] = "";
	bool		confirmed = true;
	volatile bool fired_before_commit = false;
	int			timeout_ms = tick_timeout_in_force_ms();

	/* Shutdown waits for this worker: the last heartbeat gets a short bound. */
	if (last_before_shutdown)
		timeout_ms = Min(timeout_ms, LAST_HEARTBEAT_TIMEOUT_MS);
	worker.tick.last_before_shutdown = last_before_shutdown;
	elog(DEBUG1, "alive_worker in main loop");
	worker.tick_running = true;
	worker_status_tick_begin();

	PG_TRY();
	{
		int			result;

		/* As worker_spi: the statement timestamp must be set first. */
		SetCurrentStatementStartTimestamp();
		/* SPI does not arm statement_timeout: bound the whole tick here. */
		if (!tick_timeout_begin(tick_must_end_at(tick_deadline, timeout_ms)))
			worker_exit_on_errno("set its tick timeout timer");
		StartTransactionCommand();
		/* What a client's new session would get, read again every tick. */
		session_settings_apply();
		pin_search_path();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "alive_worker heartbeat");

		result = call_python_tick();
		embedded_python.finish_call(result, ERROR);
		if (result != AW_OK)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("alive_worker Python tick failed without reporting why"),
					 errhint("Python's own message, if any, is in the server's standard error.")));

		/* ---- the hook (not while the server shuts down) ---- */
		if (tick_hook[0] != '\0' && !last_before_shutdown)
			run_hook(worker.ticks_written + 1, timeout_ms, &worker.got_sigterm);

		SPI_finish();
		PopActiveSnapshot();

		/*
		 * The commit: the WAL flush and, with synchronous_standby_names, the
		 * wait for the standbys, which the view shows as its own state.
		 */
		worker_status_committing();
		fired_before_commit = tick_timeout_fired();
		commit_us = monotonic_us();
		log_watch_commit_begin();
		CommitTransactionCommand();
		confirmed = log_watch_commit_end(fired_before_commit, worker.got_sigterm);
		commit_us = monotonic_us() - commit_us;
		tick_timeout_end();
		committed = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		(void) log_watch_commit_end(true, worker.got_sigterm);
		tick_timeout_end();
		MemoryContextSwitchTo(loop_context);
		/* Before HOLD_INTERRUPTS: the ERROR it raises resets the count. */
		tick_timeout_explain_current_error(timeout_ms);
		/* As a backend's error recovery: report, then abort everything. */
		HOLD_INTERRUPTS();
		edata = CopyErrorData();
		if (worker.got_sigterm && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
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
		worker_status_commit_took(commit_us);
	if (committed && !confirmed && !worker.got_sigterm)
		failed_sqlerrcode = report_unconfirmed_commit(commit_us, timeout_ms, failed_message,
													  sizeof(failed_message));
	else if (committed)
		error_throttle_tick_succeeded();
	worker.tick_running = false;
	worker_status_tick_end(committed && confirmed,
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
static void
probe_if_due(void)
{
	ClientProbeTarget target;
	ProbeResult result;

	if (probe_role[0] == '\0' || monotonic_us() < worker.next_probe_at)
		return;
	target.database = worker.database;
	target.role = probe_role;
	target.timeout_ms = probe_timeout_ms;
	target.stopping = &worker.got_sigterm;
	pgstat_report_activity(STATE_RUNNING, "alive_worker client-path probe");
	client_probe_run(&target, &result);
	pgstat_report_activity(STATE_IDLE, NULL);
	worker.next_probe_at = monotonic_us() + (int64) probe_interval_ms * 1000;
	/* As WL_EXIT_ON_PM_DEATH would, in the one way out. */
	if (result.postmaster_died)
		worker_exit(1);
	/* Abandoned for SIGTERM: no verdict on the clients. */
	if (worker.got_sigterm)
		return;
	if (!result.ok)
		ereport(WARNING,
				(errcode_for_probe(result.sqlstate),
				 errmsg("alive_worker client-path probe as role \"%s\" failed: %s",
						probe_role, result.message)));
	worker_status_probe_end(result.ok, result.duration_us, result.sqlstate, result.message);
}

/* The probe's SQLSTATE as an error code; a refusal without one is class 08's. */
static int
errcode_for_probe(const char *sqlstate)
{
	if (strlen(sqlstate) != 5)
		return errcode(ERRCODE_CONNECTION_FAILURE);
	return errcode(MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]));
}

/* At most once a second: at short intervals it would be most of a tick's cost. */
static void
read_disk_space_if_due(void)
{
	DiskSpace	space;

	if (monotonic_us() < worker.next_disk_read_at)
		return;
	disk_space_measure(&space);
	worker_status_disk(space.free_bytes, space.size_bytes, space.where);
	worker.next_disk_read_at = monotonic_us() + DISK_READ_PERIOD_US;
}

/* ---- the sleep ---- */

/*
 * The next deadline on the grid; ticks more than an interval late are
 * skipped.  The tick timeout for it is set now, while idle, rather than at
 * the start of the next tick.
 */
static void
schedule_next_tick(void)
{
	worker.deadline = schedule_next_deadline(worker.tick_deadline, tick_interval_ms, clock_aligned);
	if (!back_to_back)
		worker.deadline = schedule_skip_late_ticks(worker.deadline, monotonic_us(),
												   tick_interval_ms, &worker.ticks_skipped);
	worker_status_schedule(GetCurrentTimestamp() + (worker.deadline - monotonic_us()),
						   worker.ticks_skipped);
	if (!tick_timeout_set(tick_must_end_at(worker.deadline, tick_timeout_in_force_ms())))
		worker_exit_on_errno("set its tick timeout timer");
}

/* What a sleep ended with: postmaster death ends the worker, as WL_EXIT_ON_PM_DEATH would. */
static bool
after_sleep(SleepOutcome outcome)
{
	if (outcome == POSTMASTER_DIED)
		worker_exit(1);
	if (outcome == TIMER_FAILED)
		worker_exit_on_errno("set its tick timer");
	return act_on_signals();
}

/* Sleeps until the deadline, then acts on signals; returns whether the settings were reloaded. */
static bool
sleep_until_deadline(int64 deadline)
{
	return after_sleep(schedule_sleep_until(deadline, tick_interval_ms));
}

/* Sleeps timeout_ms (-1: until the latch), then acts on signals; as above. */
static bool
sleep_ms(long timeout_ms)
{
	return after_sleep(schedule_sleep_ms(timeout_ms));
}

/* ---- signals ---- */

/*
 * SIGTERM: stop after the tick in flight.  A tick blocked on a lock or a slow
 * statement is cancelled, as pg_cancel_backend would, so that it rolls back
 * at once instead of holding up shutdown; the loop then exits with code 0,
 * which tells the postmaster not to restart the worker, or with code 1 when
 * neither stop() nor the postmaster sent it (stop_on_sigterm).  The handler is
 * installed with SA_SIGINFO, which pqsignal does not offer, for the sender.
 */
static void
handle_sigterm(int signo, siginfo_t *info, void *context)
{
	int			save_errno = errno;

	worker.sigterm_sender = info != NULL ? info->si_pid : 0;
	worker.sigterm_sender_uid = info != NULL ? info->si_uid : 0;
	worker.got_sigterm = true;
	if (worker.tick_running)
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
		worker_exit_on_errno("install its SIGTERM handler");
}

/*
 * Acts on signals: SIGTERM stops the worker, SIGHUP reloads the settings.
 * Returns whether the settings were reloaded.
 */
static bool
act_on_signals(void)
{
	stop_on_sigterm();

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

/* ---- stop ---- */

/*
 * After SIGTERM: logs what the worker did, and exits with code 0 (not
 * restarted), or 1 after a termination by a session (restarted).
 */
static void
stop_on_sigterm(void)
{
	if (!worker.got_sigterm)
		return;

	/*
	 * The tick the SIGTERM arrived in has ended, committed or not: a cancel
	 * it left pending would fail the last heartbeat, or the exit itself
	 * (an ERROR in proc_exit, exit code 1: restarted).
	 */
	QueryCancelPending = false;
	write_last_heartbeat_if_shutting_down();
	if (!worker_status_record_sigterm(worker.sigterm_sender,
									  sigterm_from_a_session(worker.sigterm_sender,
															 worker.sigterm_sender_uid)))
	{
		ereport(LOG,
				(errmsg("alive_worker terminated by SIGTERM from PID %d after writing %lld heartbeats; "
						"it is started again in %d s",
						(int) worker.sigterm_sender, (long long) worker.ticks_written,
						WORKER_RESTART_DELAY_SECONDS),
				 errhint("To stop the worker until the next server start, use alive_worker.stop().")));
		worker_exit(1);
	}
	ereport(LOG,
			(errmsg("alive_worker stopping: received SIGTERM after writing %lld heartbeats",
					(long long) worker.ticks_written),
			 worker.ticks_skipped > 0 ?
			 errdetail("%lld ticks were skipped because the worker was more than an interval late.",
					   (long long) worker.ticks_skipped) : 0));
	worker_exit(0);
}

/*
 * The server's shutdown (SIGTERM from the postmaster, stop() not called): one
 * more heartbeat, with the ledger's "stopping" event, before the shutdown
 * checkpoint.  The window the shutdown opens then starts when it did, not up
 * to an interval earlier, and a standby promoted after it (a switchover) can
 * tell from the event that its old primary shut down cleanly.  Only after a
 * heartbeat that committed (a server that could not write a moment ago is
 * not tried again) and never on a standby; a second SIGTERM cancels it.
 */
static void
write_last_heartbeat_if_shutting_down(void)
{
	if (worker.sigterm_sender != PostmasterPid || worker_status_stop_was_requested() ||
		!worker.previous_committed || worker.ticks_written == 0 || RecoveryInProgress())
		return;
	/* Cleared for the tick, which reads it as "a SIGTERM came during me": one now cancels it. */
	worker.got_sigterm = false;

	/*
	 * The cancel this SIGTERM asked for was meant for the tick it arrived in.
	 * Arriving after that tick's last CHECK_FOR_INTERRUPTS, it was still
	 * pending, and cancelled this one's first statement: the ledger's
	 * "stopping" event was lost under load (test_ledger_events.py).
	 */
	QueryCancelPending = false;
	if (run_tick(monotonic_us(), true))
		worker.ticks_written++;
	worker.got_sigterm = true;
}

/*
 * Another worker holds the slot: exit code 0, so that the postmaster does
 * not start this one again.
 */
static void
stop_as_duplicate(void)
{
	ereport(LOG,
			(errmsg("alive_worker for database \"%s\" exiting: another alive worker serves it",
					worker.database)));
	worker_exit(0);
}

/*
 * The one way out of the worker: 0 tells the postmaster not to start it
 * again, 1 to start it after the restart delay.  Exit callbacks
 * (crash_guard.c's record, worker_status.c's slot, the hook host's end) run
 * in proc_exit.
 */
static void
worker_exit(int code)
{
	proc_exit(code);
}

/*
 * The worker cannot go on (no timer, no Python): the one FATAL of the
 * worker's own, which logs why and leaves through proc_exit(1), so that
 * the postmaster starts it again after the restart delay.  The leaves
 * return what failed; only here is it reported.  When Python recorded why
 * it failed, the bridge reports that error itself, at FATAL, as it reports
 * a tick's at ERROR.
 */
static void
worker_exit_fatal(const WorkerFailure *failure)
{
	if (failure->python_error)
		embedded_python.finish_call(AW_ERROR, FATAL);
	ereport(FATAL,
			(errmsg_internal("%s", failure->message),
			 failure->detail[0] != '\0' ? errdetail_internal("%s", failure->detail) : 0,
			 failure->hint[0] != '\0' ? errhint("%s", failure->hint) : 0));
}

/* A system call failed: "alive_worker could not <what>: <errno's message>", at FATAL. */
static void
worker_exit_on_errno(const char *what)
{
	int			failed_errno = errno;
	WorkerFailure failure;

	memset(&failure, 0, sizeof(failure));
	snprintf(failure.message, sizeof(failure.message), "alive_worker could not %s: %s",
			 what, strerror(failed_errno));
	worker_exit_fatal(&failure);
}
