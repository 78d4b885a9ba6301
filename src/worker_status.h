/*
 * worker_status.h
 *		Each worker's state in shared memory, for alive_worker.status()
 *		(worker_status.c).
 */
#ifndef ALIVE_WORKER_WORKER_STATUS_H
#define ALIVE_WORKER_WORKER_STATUS_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "storage/spin.h"

#include "worker_states.h"

#define MAX_WORKERS 64
#define RECENT_TICKS 128
#define ERROR_MESSAGE_SIZE 256
/* The postmaster starts a worker again this long after it exited. */
#define WORKER_RESTART_DELAY_SECONDS 5

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
	/* status (issue 13): why the worker is in its state, and since when */
	TimestampTz state_since;
	char		state_detail[ERROR_MESSAGE_SIZE];
	TimestampTz next_retry_at;	/* cannot connect, backing off, restarting */
	int			connect_failures;	/* failed attempts since the last success */
	bool		ever_connected;
	int64		last_commit_us; /* the last tick's commit, sync rep wait included */
	TimestampTz commit_started_at;	/* the tick in flight is committing */
	int			stop_requested_by;	/* PID of the backend that called stop() */
	char		stop_requested_role[NAMEDATALEN];
	char		retention_error[ERROR_MESSAGE_SIZE];	/* empty: none, or off */
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
	/* trust (issue 19): SIGTERMs from anyone but stop() and the postmaster */
	int64		terminations;
	TimestampTz last_terminated_at;
	int			last_terminated_by; /* the sender's PID; 0: not known */
	/* clients (issue 21): the client-path probe */
	char		probe_role[NAMEDATALEN];	/* empty: off */
	int64		probes_ok;
	int64		probes_failed;
	TimestampTz last_probe_at;
	TimestampTz last_probe_ok_at;
	int64		last_probe_us;
	bool		probe_failing;	/* the last probe failed */
	char		probe_error_sqlstate[6];
	char		probe_error_message[ERROR_MESSAGE_SIZE];
	/* the fullest file system the server writes to (disk_space.c) */
	int64		disk_free_bytes;	/* -1: not read yet */
	int64		disk_size_bytes;
	char		disk_free_where[ERROR_MESSAGE_SIZE];
} WorkerStatus;

/* The configured databases, in order; a worker's index is its position. */
extern List *worker_status_databases(void);

/* Called from _PG_init in the postmaster. */
extern void worker_status_init(void);

extern int	worker_status_count(void);
extern WorkerStatus *worker_status_slot(int index);

/*
 * Updates by the worker, of the slot it claimed (worker_status_connecting).
 * worker_status_started returns false if another worker took it since.
 */
extern bool worker_status_started(const char *role,
								  const char *target_table, int interval_ms);
/* From a client backend: stop() and start() */
extern void worker_status_set_state(int index, WorkerState state);
/* The worker's own slot enters state */
extern void worker_status_enter(WorkerState state);
extern void worker_status_tick_begin(void);
extern void worker_status_tick_end(bool ok, int64 duration_us,
								   int sqlerrcode, const char *message);
extern void worker_status_committing(void);
/* Around alive_worker.hook (hook_runner.c). */
extern void worker_status_in_hook(bool in_hook);
/* Why alive_worker.retention deletes nothing, as Python told it; NULL clears. */
extern void worker_status_retention_error(const char *message);
extern void worker_status_commit_took(int64 commit_us);
extern void worker_status_set_state_detail(WorkerState state,
										   const char *detail);

/*
 * Before connecting: claims the slot for this process, and records any
 * FATAL from now on (the connection's own, or a later one) in it.  A failed
 * attempt is retried at next_retry_at.  Returns false, claiming nothing, if
 * another worker holds the slot.
 */
extern bool worker_status_connecting(int index, int earlier_failures,
									 TimestampTz next_retry_at);
/* From the worker's emit_log_hook: a FATAL that ends this run. */
extern void worker_status_record_fatal(const ErrorData *edata);
extern void worker_status_backing_off(TimestampTz until);
extern void worker_status_connected(void);

/*
 * No background worker slot for the worker of configured database index
 * (RegisterDynamicBackgroundWorker refused, or the postmaster's registry
 * full): its row says so, with what max_worker_processes would need to be.
 */
extern void worker_status_not_registered(int index, int needed);

/* The client-path probe's role (empty: off), after a reload too. */
extern void worker_status_probe_role(const char *role);
/* One probe's outcome; sqlstate and message are its error when it failed. */
extern void worker_status_probe_end(bool ok, int64 duration_us,
									const char *sqlstate, const char *message);

/* The disk space read at a tick: free and size in bytes, and where. */
extern void worker_status_disk(int64 free_bytes, int64 size_bytes,
							   const char *where);

/* stop() from a client backend: who asked, shown once the worker stopped. */
extern void worker_status_stop_requested(int index, int pid, const char *role);
extern bool worker_status_stop_was_requested(void);
extern void worker_status_note_previous_run(int index);
extern void worker_status_probe_outcome(bool *probing, bool *failing,
													TimestampTz *last_probe_at,
													TimestampTz *last_ok_at, char *sqlstate,
													char *message, size_t message_size);

/* A message cut to fit size bytes on a character boundary, never mid-UTF-8. */
extern void worker_status_clip(char *dest, const char *src, size_t size);
/* The next tick's time, and the ticks skipped since the worker started. */
extern void worker_status_schedule(TimestampTz next_tick_at,
								   int64 ticks_skipped);
/* A hook ran for duration_us; message is its error, NULL if it succeeded. */
extern void worker_status_hook_end(int64 duration_us,
								   const char *message);

extern void worker_status_describe_probe_failure(const WorkerStatus *slot, char *detail, size_t size);

/* Fills in the registration of the worker for configured database index. */
extern void alive_worker_describe(BackgroundWorker *worker, int index);

/* Records in the slot why the worker stops, for the view. */
extern bool worker_status_record_sigterm(int sender, bool from_a_session);

#endif							/* ALIVE_WORKER_WORKER_STATUS_H */
