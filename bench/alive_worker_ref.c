/*-------------------------------------------------------------------------
 *
 * alive_worker_ref.c
 *		The pure C reference for make bench: a minimal background worker
 *		that does alive_worker's job and nothing more.
 *
 * Every tick is one transaction with one INSERT of the same row,
 * "STILL ALIVE and counting! N", through an SPI plan prepared once and kept;
 * between ticks a naive WaitLatch(interval).  It is the floor for the cost
 * of a tick, and its schedule is the naive one that drifts by the time each
 * tick takes.  No settings checks, no error recovery: an ERROR ends the
 * worker, as in worker_spi.  Never installed by make install; bench/run
 * installs it into the server tree it benchmarks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

PG_MODULE_MAGIC;

#if PG_VERSION_NUM < 160000
extern PGDLLEXPORT void _PG_init(void);
#endif
PGDLLEXPORT void alive_worker_ref_main(Datum main_arg);

static char *ref_table = NULL;
static int	ref_interval_ms = 10000;
static bool ref_back_to_back = false;
static int	ref_workers = 1;

void
_PG_init(void)
{
	BackgroundWorker worker;

	DefineCustomStringVariable("alive_worker_ref.table",
							   "Table of the reference worker's heartbeats, in schema public; it must exist.",
							   NULL, &ref_table, "ref_log_table",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("alive_worker_ref.interval",
							"Time the reference worker sleeps after each tick.",
							NULL, &ref_interval_ms, 10000, 1, 24 * 60 * 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomBoolVariable("alive_worker_ref.back_to_back",
							 "Run ticks back to back, without sleeping.",
							 NULL, &ref_back_to_back, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("alive_worker_ref.workers",
							"Reference workers to start, all writing into the same table: "
							"the baseline for memory per database (bench/cost.py).",
							NULL, &ref_workers, 1, 1, 64,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("alive_worker_ref");

	if (!process_shared_preload_libraries_in_progress)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "alive_worker_ref");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "alive_worker_ref_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "alive worker ref");
	snprintf(worker.bgw_type, BGW_MAXLEN, "alive worker ref");
	for (int i = 0; i < ref_workers; i++)
		RegisterBackgroundWorker(&worker);
}

/*
 * One tick: one transaction, one INSERT through the kept plan.  Not inlined,
 * so that a profile (callgrind --toggle-collect=run_tick) can single it out.
 */
static pg_noinline void
run_tick(SPIPlanPtr *plan, const char *query, int64 number)
{
	char		message[64];
	Datum		values[1];
	Oid			argtypes[1] = {TEXTOID};

	/* As worker_spi: the statement timestamp must be set first. */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "alive_worker_ref heartbeat");

	if (*plan == NULL)
	{
		*plan = SPI_prepare(query, 1, argtypes);
		if (*plan == NULL || SPI_keepplan(*plan) != 0)
			elog(ERROR, "alive_worker_ref could not prepare \"%s\"", query);
	}
	snprintf(message, sizeof(message), "STILL ALIVE and counting! %lld",
			 (long long) number);
	values[0] = CStringGetTextDatum(message);
	if (SPI_execute_plan(*plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "alive_worker_ref could not insert into %s", ref_table);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* The naive schedule: sleep one interval after each tick, whatever it took. */
static pg_noinline void
sleep_and_handle_signals(void)
{
	if (!ref_back_to_back)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ref_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

void
alive_worker_ref_main(Datum main_arg)
{
	SPIPlanPtr	plan = NULL;
	char	   *query;

	/* die: SIGTERM ends the worker at the next CHECK_FOR_INTERRUPTS. */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection("postgres", NULL, 0);

	query = psprintf("INSERT INTO public.%s (message) VALUES ($1)",
					 quote_identifier(ref_table));
	for (int64 number = 1;; number++)
	{
		run_tick(&plan, query, number);
		sleep_and_handle_signals();
	}
}
