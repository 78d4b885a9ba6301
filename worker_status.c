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

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "worker_status.h"

typedef struct StatusArea
{
	int			count;
	WorkerStatus slots[FLEXIBLE_ARRAY_MEMBER];
} StatusArea;

static StatusArea *status_area = NULL;
static int	owned_index = -1;	/* the slot this process's worker owns */

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

/* A worker that exits other than by SIGTERM will be started again. */
static void
release_slot(int code, Datum arg)
{
	WorkerStatus *slot = worker_status_slot(owned_index);

	SpinLockAcquire(&slot->mutex);
	if (slot->state != WORKER_STOPPED)
		slot->state = WORKER_STARTING;
	slot->pid = 0;
	slot->next_tick_at = 0;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_started(int index, const char *role, const char *target_table,
					  int interval_ms)
{
	WorkerStatus *slot = worker_status_slot(index);

	if (owned_index < 0)
	{
		owned_index = index;
		on_shmem_exit(release_slot, (Datum) 0);
	}
	SpinLockAcquire(&slot->mutex);
	if (slot->pid != MyProcPid)
	{
		slot->pid = MyProcPid;
		slot->started_at = GetCurrentTimestamp();
		slot->state = WORKER_STARTING;
	}
	strlcpy(slot->role, role, NAMEDATALEN);
	strlcpy(slot->target_table, target_table, sizeof(slot->target_table));
	slot->interval_ms = interval_ms;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_set_state(int index, WorkerState state)
{
	WorkerStatus *slot = worker_status_slot(index);

	SpinLockAcquire(&slot->mutex);
	slot->state = state;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_tick_begin(int index)
{
	WorkerStatus *slot = worker_status_slot(index);
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	slot->state = WORKER_TICKING;
	slot->last_tick_at = now;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_tick_end(int index, bool ok, int64 duration_us, int sqlerrcode,
					   const char *message)
{
	WorkerStatus *slot = worker_status_slot(index);
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	if (ok)
	{
		slot->state = WORKER_SLEEPING;
		slot->ticks_ok++;
		slot->last_ok_at = now;
	}
	else
	{
		slot->state = WORKER_FAILING;
		slot->ticks_failed++;
		slot->last_error_at = now;
		memcpy(slot->last_error_sqlstate, unpack_sql_state(sqlerrcode), 6);
		strlcpy(slot->last_error_message, message ? message : "",
				sizeof(slot->last_error_message));
	}
	slot->recent_tick_us[slot->recent_next] = (int32) Min(duration_us, PG_INT32_MAX);
	slot->recent_next = (slot->recent_next + 1) % RECENT_TICKS;
	slot->recent_count = Min(slot->recent_count + 1, RECENT_TICKS);
	SpinLockRelease(&slot->mutex);
}

void
worker_status_schedule(int index, TimestampTz next_tick_at, int64 skipped)
{
	WorkerStatus *slot = worker_status_slot(index);

	SpinLockAcquire(&slot->mutex);
	slot->next_tick_at = next_tick_at;
	slot->ticks_skipped += skipped;
	SpinLockRelease(&slot->mutex);
}

void
worker_status_hook_end(int index, int64 duration_us, const char *message)
{
	WorkerStatus *slot = worker_status_slot(index);
	TimestampTz now = message ? GetCurrentTimestamp() : 0;

	SpinLockAcquire(&slot->mutex);
	if (message)
	{
		slot->hook_failures++;
		slot->last_hook_error_at = now;
		strlcpy(slot->last_hook_error, message, sizeof(slot->last_hook_error));
	}
	slot->recent_hook_us[slot->recent_hook_next] = (int32) Min(duration_us, PG_INT32_MAX);
	slot->recent_hook_next = (slot->recent_hook_next + 1) % RECENT_TICKS;
	slot->recent_hook_count = Min(slot->recent_hook_count + 1, RECENT_TICKS);
	SpinLockRelease(&slot->mutex);
}

const char *
worker_state_name(WorkerState state)
{
	switch (state)
	{
		case WORKER_STARTING:
			return "starting";
		case WORKER_SLEEPING:
			return "sleeping";
		case WORKER_TICKING:
			return "ticking";
		case WORKER_FAILING:
			return "failing";
		case WORKER_STOPPED:
			return "stopped";
		case WORKER_DISABLED:
			return "disabled by crash guard";
	}
	return "unknown";
}
