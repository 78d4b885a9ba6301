/*-------------------------------------------------------------------------
 *
 * worker_status.c
 *		Each worker's state in shared memory: what alive_worker.status()
 *		reports, from any database and even while the worker is failing.
 *
 * One slot per configured database, sized when the postmaster starts.  The
 * worker owning a slot updates it under the slot's spinlock, twice a tick;
 * readers copy it out under the same lock.  A crash restart reinitialises
 * shared memory, and with it the counters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "alive_worker/_compat.h"	/* what differs between majors */

#include "mb/pg_wchar.h"
#include "postmaster/postmaster.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "server_start.h"
#include "worker_status.h"

typedef struct StatusArea
{
	int			count;
	WorkerStatus slots[FLEXIBLE_ARRAY_MEMBER];
} StatusArea;

static StatusArea *status_area = NULL;

/*
 * The slot this process's worker owns, once it claimed it (before it
 * connects): every update of the worker's own goes to it.  Kept here, and
 * only here, since the exit callback and the log hook need it too.
 */
static int	owned_index = -1;
static bool fatal_recorded = false; /* this run is ending in a FATAL */

static void describe_probe_failure(WorkerStatus *slot);

static shmem_request_hook_type previous_shmem_request_hook = NULL;
static shmem_startup_hook_type previous_shmem_startup_hook = NULL;

List *
worker_status_databases(void)
{
	const char *listed = GetConfigOption("alive_worker.databases", false, false);
	char	   *raw;
	List	   *names = NIL;

	if (listed == NULL || listed[0] == '\0')
		return list_make1(pstrdup(GetConfigOption("alive_worker.database", false, false)));
	raw = pstrdup(listed);
	/* The check hook has accepted the list already. */
	(void) SplitIdentifierString(raw, ',', &names);
	return names;
}

static Size
status_area_size(int count)
{
	return add_size(offsetof(StatusArea, slots), mul_size(count, sizeof(WorkerStatus)));
}

static void
request_shared_memory(void)
{
	if (previous_shmem_request_hook)
		previous_shmem_request_hook();
	RequestAddinShmemSpace(status_area_size(list_length(worker_status_databases())));
}

/*
 * In the postmaster, once every preloaded library has registered its
 * workers: those of ours that RegisterBackgroundWorker refused (it only logs
 * "too many background workers") would otherwise stay "starting" forever.
 */
static void
report_refused_registrations(void)
{
	int			refused = 0;
	int			registered = 0;

	for (int i = 0; i < status_area->count; i++)
	{
		bool		found = false;

		registered = alive_worker_registered_workers(i, &found);
		if (!found)
			refused++;
	}
	for (int i = 0; refused > 0 && i < status_area->count; i++)
	{
		bool		found = false;

		(void) alive_worker_registered_workers(i, &found);
		if (!found)
			worker_status_not_registered(i, registered + refused);
	}
}

static void
start_shared_memory(void)
{
	List	   *databases = worker_status_databases();
	bool		found;

	if (previous_shmem_startup_hook)
		previous_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	status_area = ShmemInitStruct("alive_worker status",
								  status_area_size(list_length(databases)), &found);
	if (!found)
	{
		status_area->count = list_length(databases);
		for (int i = 0; i < status_area->count; i++)
		{
			WorkerStatus *slot = &status_area->slots[i];
			const char *role = GetConfigOption("alive_worker.role", false, false);

			memset(slot, 0, sizeof(WorkerStatus));
			slot->disk_free_bytes = -1;
			slot->disk_size_bytes = -1;
			SpinLockInit(&slot->mutex);
			slot->state = WORKER_STARTING;
			strlcpy(slot->database, list_nth(databases, i), NAMEDATALEN);
			strlcpy(slot->role, role, NAMEDATALEN);
			snprintf(slot->target_table, sizeof(slot->target_table), "%s.%s",
					 quote_identifier(GetConfigOption("alive_worker.schema", false, false)),
					 quote_identifier(GetConfigOption("alive_worker.table", false, false)));
			(void) parse_int(GetConfigOption("alive_worker.interval", false, false),
							 &slot->interval_ms, GUC_UNIT_MS, NULL);
		}
		if (!IsUnderPostmaster)
		{
			server_start_shared_memory_made();
			report_refused_registrations();
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
worker_status_init(void)
{
	previous_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_shared_memory;
	previous_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = start_shared_memory;
}

int
worker_status_count(void)
{
	return status_area ? status_area->count : -1;
}

WorkerStatus *
worker_status_slot(int index)
{
	Assert(status_area != NULL && index >= 0 && index < status_area->count);
	return &status_area->slots[index];
}

void
worker_status_clip(char *dest, const char *src, size_t size)
{
	int			encoding = GetDatabaseEncoding();
	int			length;

	/*
	 * Before the worker connects, the database's encoding is not known yet
	 * (SQL_ASCII, which cuts anywhere); server messages are UTF-8 then in
	 * practice, and a cut on a UTF-8 boundary is also one in ASCII.
	 */
	if (encoding == PG_SQL_ASCII)
		encoding = PG_UTF8;
	length = pg_encoding_mbcliplen(encoding, src, strlen(src), (int) size - 1);
	memcpy(dest, src, length);
	dest[length] = '\0';
}

/* The worker's own slot, claimed by worker_status_connecting. */
static WorkerStatus *
owned_slot(void)
{
	Assert(owned_index >= 0);
	return worker_status_slot(owned_index);
}

/* Under the slot's lock: a new state, which began now. */
static void
enter_state(WorkerStatus *slot, WorkerState state, TimestampTz now)
{
	if (slot->state != state)
		slot->state_since = now;
	slot->state = state;
}

/*
 * A worker that exits other than by SIGTERM will be started again, after
 * the restart delay: "restarting", or still "cannot connect" if that is how
 * it ended.
 */
static void
release_slot(int code, Datum arg)
{
	WorkerStatus *slot = worker_status_slot(owned_index);
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	/* A worker started since (start() after a stop()) owns it now. */
	if (slot->pid == MyProcPid)
	{
		if (slot->state != WORKER_STOPPED && slot->state != WORKER_CANNOT_CONNECT)
		{
			/* A termination has said why already. */
			bool		explained = fatal_recorded || slot->state == WORKER_RESTARTING;

			enter_state(slot, WORKER_RESTARTING, now);
			slot->next_retry_at = TimestampTzPlusMilliseconds(now, WORKER_RESTART_DELAY_SECONDS * 1000);
			if (!explained)
				strlcpy(slot->state_detail, "the worker exited and will be started again",
						sizeof(slot->state_detail));
		}
		slot->pid = 0;
		slot->next_tick_at = 0;
	}
	SpinLockRelease(&slot->mutex);
}

/*
 * Under the slot's lock, as a new process takes it: the tick counters count
 * "since this process started" (README), not since the server did.
 */
static void
reset_counters(WorkerStatus *slot)
{
	slot->ticks_ok = 0;
	slot->ticks_failed = 0;
	slot->ticks_skipped = 0;
	slot->probes_ok = 0;
	slot->probes_failed = 0;
}

static void
claim_slot(int index)
{
	if (owned_index < 0)
	{
		owned_index = index;
		on_shmem_exit(release_slot, (Datum) 0);
	}
}

bool
worker_status_connecting(int index, int earlier_failures, TimestampTz next_retry_at)
{
	WorkerStatus *slot = worker_status_slot(index);
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	/* Another worker serves this database: the caller must not. */
	if (slot->pid != 0 && slot->pid != MyProcPid)
	{
		SpinLockRelease(&slot->mutex);
		return false;
	}
	if (slot->pid != MyProcPid)
		reset_counters(slot);
	slot->pid = MyProcPid;
	slot->started_at = now;
	slot->connect_failures = earlier_failures;
	slot->next_retry_at = next_retry_at;
	slot->stop_requested_by = 0;
	slot->stop_requested_role[0] = '\0';
	/* Only the very first attempt is merely "starting". */
	if (earlier_failures > 0)
		enter_state(slot, WORKER_CONNECTING, now);
	else if (slot->state == WORKER_STARTING || slot->state == WORKER_STOPPED)
		enter_state(slot, WORKER_STARTING, now);
	else
		enter_state(slot, WORKER_CONNECTING, now);
	SpinLockRelease(&slot->mutex);
	claim_slot(index);
	return true;
}

void
worker_status_backing_off(TimestampTz until)
{
	WorkerStatus *slot = owned_slot();

	SpinLockAcquire(&slot->mutex);
	enter_state(slot, WORKER_BACKING_OFF, GetCurrentTimestamp());
	slot->next_retry_at = until;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_connected(void)
{
	WorkerStatus *slot = owned_slot();

	SpinLockAcquire(&slot->mutex);
	slot->connect_failures = 0;
	slot->ever_connected = true;
	slot->next_retry_at = 0;
	slot->state_detail[0] = '\0';
	SpinLockRelease(&slot->mutex);
}

void
worker_status_record_fatal(const ErrorData *edata)
{
	WorkerStatus *slot;
	TimestampTz now = GetCurrentTimestamp();

	if (owned_index < 0)
		return;
	slot = worker_status_slot(owned_index);
	fatal_recorded = true;
	SpinLockAcquire(&slot->mutex);
	slot->last_error_at = now;
	memcpy(slot->last_error_sqlstate, unpack_sql_state(edata->sqlerrcode), 6);
	worker_status_clip(slot->last_error_message, edata->message ? edata->message : "",
					   sizeof(slot->last_error_message));
	strlcpy(slot->state_detail, slot->last_error_message, sizeof(slot->state_detail));
	if (slot->state == WORKER_STARTING || slot->state == WORKER_CONNECTING ||
		slot->state == WORKER_BACKING_OFF)
	{
		enter_state(slot, WORKER_CANNOT_CONNECT, now);
		slot->connect_failures++;
	}
	SpinLockRelease(&slot->mutex);
}

void
worker_status_not_registered(int index, int needed)
{
	WorkerStatus *slot = worker_status_slot(index);
	char		detail[ERROR_MESSAGE_SIZE];

	snprintf(detail, sizeof(detail),
			 "no free background worker slot: max_worker_processes = %d, at least %d needed",
			 max_worker_processes, needed);
	SpinLockAcquire(&slot->mutex);
	enter_state(slot, WORKER_NOT_REGISTERED, GetCurrentTimestamp());
	strlcpy(slot->state_detail, detail, sizeof(slot->state_detail));
	SpinLockRelease(&slot->mutex);
}

/*
 * At the worker's start, before anything changes the slot: how the previous
 * worker of this database ended, for the ledger (server_start.c).  start()
 * leaves the state_since of a stop, and the stop's caller, in place.
 */
void
worker_status_note_previous_run(int index)
{
	WorkerStatus *slot = worker_status_slot(index);
	WorkerStatus copy;

	SpinLockAcquire(&slot->mutex);
	memcpy(&copy, slot, sizeof(copy));
	SpinLockRelease(&slot->mutex);
	server_start_previous_run(copy.started_at == 0 ? "" : worker_state_name(copy.state),
							  copy.state_since, copy.last_ok_at, copy.stop_requested_by,
							  copy.stop_requested_role);
}

void
worker_status_stop_requested(int index, int pid, const char *role)
{
	WorkerStatus *slot = worker_status_slot(index);

	SpinLockAcquire(&slot->mutex);
	slot->stop_requested_by = pid;
	strlcpy(slot->stop_requested_role, role, sizeof(slot->stop_requested_role));
	SpinLockRelease(&slot->mutex);
}

/* Whether stop() asked this worker to stop (its SIGTERM then comes from the postmaster). */
bool
worker_status_stop_was_requested(void)
{
	WorkerStatus *slot = owned_slot();
	bool		requested;

	SpinLockAcquire(&slot->mutex);
	requested = slot->stop_requested_by != 0;
	SpinLockRelease(&slot->mutex);
	return requested;
}

bool
worker_status_started(const char *role, const char *target_table,
					  int interval_ms)
{
	WorkerStatus *slot = owned_slot();
	int			other_pid;

	SpinLockAcquire(&slot->mutex);
	other_pid = slot->pid;
	if (other_pid == 0)
	{
		reset_counters(slot);
		slot->pid = MyProcPid;
		slot->started_at = GetCurrentTimestamp();
		enter_state(slot, WORKER_STARTING, slot->started_at);
	}
	if (other_pid == 0 || other_pid == MyProcPid)
	{
		strlcpy(slot->role, role, NAMEDATALEN);
		strlcpy(slot->target_table, target_table, sizeof(slot->target_table));
		slot->interval_ms = interval_ms;
	}
	SpinLockRelease(&slot->mutex);

	/* Another worker serves this database: the caller must not. */
	if (other_pid != 0 && other_pid != MyProcPid)
		return false;
	return true;
}

void
worker_status_set_state(int index, WorkerState state)
{
	WorkerStatus *slot = worker_status_slot(index);

	SpinLockAcquire(&slot->mutex);
	enter_state(slot, state, GetCurrentTimestamp());
	SpinLockRelease(&slot->mutex);
}

void
worker_status_enter(WorkerState state)
{
	WorkerStatus *slot = owned_slot();

	SpinLockAcquire(&slot->mutex);
	enter_state(slot, state, GetCurrentTimestamp());
	SpinLockRelease(&slot->mutex);
}

void
worker_status_set_state_detail(WorkerState state, const char *detail)
{
	WorkerStatus *slot = owned_slot();
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	enter_state(slot, state, now);
	worker_status_clip(slot->state_detail, detail, sizeof(slot->state_detail));
	SpinLockRelease(&slot->mutex);
}

void
worker_status_committing(void)
{
	WorkerStatus *slot = owned_slot();

	SpinLockAcquire(&slot->mutex);
	slot->commit_started_at = GetCurrentTimestamp();
	SpinLockRelease(&slot->mutex);
}

void
worker_status_in_hook(bool in_hook)
{
	WorkerStatus *slot;

	if (owned_index < 0)
		return;
	slot = worker_status_slot(owned_index);
	SpinLockAcquire(&slot->mutex);
	if (in_hook && slot->state == WORKER_TICKING)
		enter_state(slot, WORKER_IN_HOOK, GetCurrentTimestamp());
	else if (!in_hook && slot->state == WORKER_IN_HOOK)
		enter_state(slot, WORKER_TICKING, GetCurrentTimestamp());
	SpinLockRelease(&slot->mutex);
}

/*
 * The client-path probe's last outcome, for the ledger's events: whether a
 * probe role is set, whether its last probe failed, when it last ran and
 * last succeeded, and its error.
 */
void
worker_status_probe_outcome(bool *probing, bool *failing, TimestampTz *last_probe_at,
							TimestampTz *last_ok_at, char *sqlstate, char *message,
							size_t message_size)
{
	WorkerStatus *slot;

	*probing = *failing = false;
	*last_probe_at = *last_ok_at = 0;
	sqlstate[0] = message[0] = '\0';
	if (owned_index < 0)
		return;
	slot = worker_status_slot(owned_index);
	SpinLockAcquire(&slot->mutex);
	*probing = slot->probe_role[0] != '\0' && slot->last_probe_at != 0;
	*failing = slot->probe_failing;
	*last_probe_at = slot->last_probe_at;
	*last_ok_at = slot->last_probe_ok_at;
	strlcpy(sqlstate, slot->probe_error_sqlstate, 6);
	strlcpy(message, slot->probe_error_message, message_size);
	SpinLockRelease(&slot->mutex);
}

void
worker_status_retention_error(const char *message)
{
	WorkerStatus *slot;

	if (owned_index < 0)
		return;
	slot = worker_status_slot(owned_index);
	SpinLockAcquire(&slot->mutex);
	worker_status_clip(slot->retention_error, message ? message : "",
					   sizeof(slot->retention_error));
	SpinLockRelease(&slot->mutex);
}

void
worker_status_commit_took(int64 commit_us)
{
	WorkerStatus *slot = owned_slot();

	SpinLockAcquire(&slot->mutex);
	slot->last_commit_us = commit_us;
	slot->commit_started_at = 0;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_tick_begin(void)
{
	WorkerStatus *slot = owned_slot();
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	enter_state(slot, WORKER_TICKING, now);
	slot->last_tick_at = now;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_tick_end(bool ok, int64 duration_us, int sqlerrcode,
					   const char *message)
{
	WorkerStatus *slot = owned_slot();
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	if (ok && slot->probe_failing)
	{
		/* The heartbeat commits, but a client's new session cannot write. */
		enter_state(slot, WORKER_PROBE_FAILING, now);
		slot->ticks_ok++;
		slot->last_ok_at = now;
		describe_probe_failure(slot);
	}
	else if (ok)
	{
		enter_state(slot, WORKER_SLEEPING, now);
		slot->ticks_ok++;
		slot->last_ok_at = now;
		slot->state_detail[0] = '\0';
	}
	else
	{
		enter_state(slot, WORKER_FAILING, now);
		slot->ticks_failed++;
		slot->last_error_at = now;
		memcpy(slot->last_error_sqlstate, unpack_sql_state(sqlerrcode), 6);
		worker_status_clip(slot->last_error_message, message ? message : "",
						   sizeof(slot->last_error_message));
		strlcpy(slot->state_detail, slot->last_error_message, sizeof(slot->state_detail));
	}
	slot->commit_started_at = 0;
	slot->recent_tick_us[slot->recent_next] = (int32) Min(duration_us, PG_INT32_MAX);
	slot->recent_next = (slot->recent_next + 1) % RECENT_TICKS;
	slot->recent_count = Min(slot->recent_count + 1, RECENT_TICKS);
	SpinLockRelease(&slot->mutex);
}

/* What the last failed probe found, for the state's detail. */
void
worker_status_describe_probe_failure(const WorkerStatus *slot, char *detail, size_t size)
{
	snprintf(detail, size, "a client's new session as role \"%s\" cannot write: %s (SQLSTATE %s)",
			 slot->probe_role, slot->probe_error_message, slot->probe_error_sqlstate);
}

/* Under the slot's lock: the state's detail, from the last failed probe. */
static void
describe_probe_failure(WorkerStatus *slot)
{
	worker_status_describe_probe_failure(slot, slot->state_detail, sizeof(slot->state_detail));
}

void
worker_status_probe_role(const char *role)
{
	WorkerStatus *slot = owned_slot();

	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->probe_role, role, sizeof(slot->probe_role));
	if (role[0] == '\0' && slot->probe_failing)
	{
		/* The probe is off: no verdict of it stands. */
		slot->probe_failing = false;
		if (slot->state == WORKER_PROBE_FAILING)
		{
			enter_state(slot, WORKER_SLEEPING, GetCurrentTimestamp());
			slot->state_detail[0] = '\0';
		}
	}
	SpinLockRelease(&slot->mutex);
}

void
worker_status_probe_end(bool ok, int64 duration_us, const char *sqlstate,
						const char *message)
{
	WorkerStatus *slot = owned_slot();
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	slot->last_probe_at = now;
	slot->last_probe_us = duration_us;
	slot->probe_failing = !ok;
	if (ok)
	{
		slot->probes_ok++;
		slot->last_probe_ok_at = now;
		if (slot->state == WORKER_PROBE_FAILING)
		{
			enter_state(slot, WORKER_SLEEPING, now);
			slot->state_detail[0] = '\0';
		}
	}
	else
	{
		slot->probes_failed++;
		strlcpy(slot->probe_error_sqlstate, sqlstate, sizeof(slot->probe_error_sqlstate));
		worker_status_clip(slot->probe_error_message, message, sizeof(slot->probe_error_message));
		/* A failing tick says its own error; a sleeping worker says the probe's. */
		if (slot->state == WORKER_SLEEPING || slot->state == WORKER_PROBE_FAILING)
		{
			enter_state(slot, WORKER_PROBE_FAILING, now);
			describe_probe_failure(slot);
		}
	}
	SpinLockRelease(&slot->mutex);
}

void
worker_status_disk(int64 free_bytes, int64 size_bytes, const char *where)
{
	WorkerStatus *slot = owned_slot();

	SpinLockAcquire(&slot->mutex);
	slot->disk_free_bytes = free_bytes;
	slot->disk_size_bytes = size_bytes;
	worker_status_clip(slot->disk_free_where, where, sizeof(slot->disk_free_where));
	SpinLockRelease(&slot->mutex);
}

void
worker_status_schedule(TimestampTz next_tick_at, int64 ticks_skipped)
{
	WorkerStatus *slot = owned_slot();

	SpinLockAcquire(&slot->mutex);
	slot->next_tick_at = next_tick_at;
	slot->ticks_skipped = ticks_skipped;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_hook_end(int64 duration_us, const char *message)
{
	WorkerStatus *slot = owned_slot();
	TimestampTz now = message ? GetCurrentTimestamp() : 0;

	SpinLockAcquire(&slot->mutex);
	if (message)
	{
		slot->hook_failures++;
		slot->last_hook_error_at = now;
		worker_status_clip(slot->last_hook_error, message, sizeof(slot->last_hook_error));
	}
	slot->recent_hook_us[slot->recent_hook_next] = (int32) Min(duration_us, PG_INT32_MAX);
	slot->recent_hook_next = (slot->recent_hook_next + 1) % RECENT_TICKS;
	slot->recent_hook_count = Min(slot->recent_hook_count + 1, RECENT_TICKS);
	SpinLockRelease(&slot->mutex);
}

/* The words and meaning of each state, in the enum's order (worker_states.h). */
typedef struct WorkerStateRow
{
	const char *words;
	bool		writing;
} WorkerStateRow;

#define WORKER_STATE_ROW(name, words, writing) {words, writing},

static const WorkerStateRow worker_state_rows[] = {
	WORKER_STATES(WORKER_STATE_ROW)
};

const char *
worker_state_name(WorkerState state)
{
	if ((unsigned) state >= lengthof(worker_state_rows))
		return "unknown";
	return worker_state_rows[state].words;
}

bool
worker_state_writing(WorkerState state)
{
	return (unsigned) state < lengthof(worker_state_rows) && worker_state_rows[state].writing;
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
	worker->bgw_restart_time = WORKER_RESTART_DELAY_SECONDS;
	worker->bgw_main_arg = Int32GetDatum(index);
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "alive_worker");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "alive_worker_main");
	snprintf(worker->bgw_name, BGW_MAXLEN, "alive worker %s",
			 (char *) list_nth(worker_status_databases(), index));
	snprintf(worker->bgw_type, BGW_MAXLEN, "alive worker");
}

/*
 * Records how a SIGTERM ends the worker; returns whether it stays stopped.
 *
 * stop() (which names itself in the slot before it signals), the
 * postmaster's shutdown and a kill from the OS (the server's OS account,
 * which may stop the worker anyway) stop it for good.  A SIGTERM from a
 * session of the server is a termination: pg_terminate_backend() by a member
 * of pg_signal_backend, a role below superuser.  It is counted and shown, and
 * the worker is started again after the restart delay (the caller exits with
 * code 1): ending the heartbeat for good is stop()'s, which only a superuser
 * may call unless granted.
 */
bool
worker_status_record_sigterm(int sender, bool from_a_session)
{
	WorkerStatus *slot = owned_slot();
	char		detail[ERROR_MESSAGE_SIZE];
	int			stop_requested_by;
	bool		stopped = true;

	SpinLockAcquire(&slot->mutex);
	stop_requested_by = slot->stop_requested_by;
	if (stop_requested_by != 0)
		snprintf(detail, sizeof(detail),
				 "stopped by alive_worker.stop() from PID %d (role \"%s\")",
				 stop_requested_by, slot->stop_requested_role);
	else if (sender == PostmasterPid)
		strlcpy(detail, "stopped by the server's shutdown", sizeof(detail));
	else if (!from_a_session)
		snprintf(detail, sizeof(detail), "stopped by SIGTERM from PID %d, a process of the OS", sender);
	else
	{
		stopped = false;
		slot->terminations++;
		slot->last_terminated_at = GetCurrentTimestamp();
		slot->last_terminated_by = sender;
		snprintf(detail, sizeof(detail),
				 "terminated by SIGTERM from PID %d (pg_terminate_backend); started again after %d s",
				 sender, WORKER_RESTART_DELAY_SECONDS);
	}
	SpinLockRelease(&slot->mutex);
	worker_status_set_state_detail(stopped ? WORKER_STOPPED : WORKER_RESTARTING, detail);
	return stopped;
}
