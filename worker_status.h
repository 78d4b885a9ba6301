/*
 * worker_status.h
 *		Each worker's state in shared memory, for alive_worker.status()
 *		(worker_status.c).
 */
#ifndef ALIVE_WORKER_WORKER_STATUS_H
#define ALIVE_WORKER_WORKER_STATUS_H

#include "datatype/timestamp.h"
#include "storage/spin.h"

#define MAX_WORKERS 64
#define RECENT_TICKS 128
#define ERROR_MESSAGE_SIZE 256

typedef enum WorkerState
{
	WORKER_STARTING = 0,		/* registered, not yet ticking */
	WORKER_SLEEPING,
	WORKER_TICKING,
	WORKER_FAILING,				/* asleep after a failed tick */
	WORKER_STOPPED,				/* exited on SIGTERM; not restarted */
	WORKER_DISABLED				/* idle: its crash guard holds */
} WorkerState;

typedef struct WorkerStatus
{
	slock_t		mutex;
	char		database[NAMEDATALEN];
	char		role[NAMEDATALEN];
	char		target_table[2 * NAMEDATALEN + 8];	/* quoted schema.table */
	int			interval_ms;
	WorkerState state;
	int			pid;			/* 0 when not running */
	TimestampTz started_at;
	TimestampTz last_tick_at;
	TimestampTz last_ok_at;
	TimestampTz last_error_at;
	TimestampTz next_tick_at;
	int64		ticks_ok;
	int64		ticks_failed;
	int64		ticks_skipped;
	char		last_error_sqlstate[6];
	char		last_error_message[ERROR_MESSAGE_SIZE];
	int32		recent_tick_us[RECENT_TICKS];	/* ring of tick durations */
	int			recent_count;	/* entries filled, up to RECENT_TICKS */
	int			recent_next;
	/* hooks (issue 12): alive_worker.hook's runs, failed or not */
	int64		hook_failures;
	char		last_hook_error[ERROR_MESSAGE_SIZE];
	TimestampTz last_hook_error_at;
	int32		recent_hook_us[RECENT_TICKS];	/* ring of hook durations */
	int			recent_hook_count;
	int			recent_hook_next;
} WorkerStatus;

/* The configured databases, in order; a worker's index is its position. */
extern List *worker_status_databases(void);

/* Called from _PG_init in the postmaster. */
extern void worker_status_init(void);

extern int	worker_status_count(void);
extern WorkerStatus *worker_status_slot(int index);

/* Updates by the worker owning the slot. */
extern void worker_status_started(int index, const char *role,
								  const char *target_table, int interval_ms);
extern void worker_status_set_state(int index, WorkerState state);
extern void worker_status_tick_begin(int index);
extern void worker_status_tick_end(int index, bool ok, int64 duration_us,
								   int sqlerrcode, const char *message);
extern void worker_status_schedule(int index, TimestampTz next_tick_at,
								   int64 skipped);
/* A hook ran for duration_us; message is its error, NULL if it succeeded. */
extern void worker_status_hook_end(int index, int64 duration_us,
								   const char *message);

extern const char *worker_state_name(WorkerState state);

#endif							/* ALIVE_WORKER_WORKER_STATUS_H */
