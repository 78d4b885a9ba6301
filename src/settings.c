/*
 * settings.c
 *		alive_worker's settings (GUCs): their definitions and their checks.
 *
 * A setting that is wrong stops at the check, with a message that names it,
 * so that the worker never starts on a value it cannot use.
 */
#include "postgres.h"

#include <limits.h>

#include "alive_worker/_compat.h"	/* what differs between majors */

#include "utils/guc.h"
#include "utils/varlena.h"

#include "settings.h"
#include "worker_status.h"

/* The settings' values, kept up to date by the GUC machinery */
char	   *worker_database = NULL;
char	   *worker_databases = NULL;
char	   *worker_role = NULL;
char	   *table_schema = NULL;
char	   *table_name = NULL;
char	   *heartbeat_message = NULL;
char	   *tick_hook = NULL;
int			tick_interval_ms = 10000;
int			tick_timeout_ms = 0;
int			hook_memory_limit_kb = 256 * 1024;
char	   *probe_role = NULL;
int			probe_interval_ms = 30000;
int			probe_timeout_ms = 5000;
int			retention_s = 0;
int			crash_limit = 3;
int			crash_window_s = 600;
bool		clock_aligned = false;
bool		back_to_back = false;

static const struct config_enum_entry hook_failure_options[] = {
	{"log", HOOK_FAILURE_LOG, false},
	{"fail_tick", HOOK_FAILURE_FAIL_TICK, false},
	{NULL, 0, false}
};
int			hook_failure = HOOK_FAILURE_LOG;

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
void
settings_define_server_start(void)
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

/* The settings a reload (SIGHUP) changes. */
void
settings_define_reloadable(void)
{
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

	DefineCustomIntVariable("alive_worker.hook_memory_limit",
							"Most memory the hook host may allocate (RLIMIT_DATA); 0 sets no limit.",
							"A hook that reaches it gets MemoryError; its host then ends, is logged, and is started again.",
							&hook_memory_limit_kb,
							256 * 1024,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_KB,
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

	DefineCustomStringVariable("alive_worker.probe_role",
							   "Role of the client-path probe, which connects as a client does and writes a row; empty turns the probe off.",
							   "The role needs LOGIN, a pg_hba.conf line for local connections, and INSERT on the heartbeat table and USAGE on its sequence.",
							   &probe_role,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_role, NULL, NULL);

	DefineCustomIntVariable("alive_worker.probe_interval",
							"How often the client-path probe connects and writes.",
							NULL,
							&probe_interval_ms,
							30000,
							100,
							MAX_INTERVAL_MS,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alive_worker.probe_timeout",
							"Longest the client-path probe may take to connect, write and commit.",
							NULL,
							&probe_timeout_ms,
							5000,
							10,
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
}

/* The tick's timeout: alive_worker.tick_timeout, or by default the interval. */
int
tick_timeout_in_force_ms(void)
{
	return tick_timeout_ms > 0 ? tick_timeout_ms : tick_interval_ms;
}
