/*
 * server_start.h
 *		What this worker's start says about the stop before it: the server's
 *		start, a crash recovery, a cluster reset, stop(), a promotion
 *		(server_start.c).  The ledger's events are written from it (issue 23).
 */
#ifndef ALIVE_WORKER_SERVER_START_H
#define ALIVE_WORKER_SERVER_START_H

#include "datatype/timestamp.h"

/* In the postmaster, from _PG_init: pg_control as the server found it. */
extern void server_start_read_control_file(void);

/* In the postmaster, each time shared memory is made: a cluster reset after the first. */
extern void server_start_shared_memory_made(void);

/*
 * In the worker, before its slot is reset for this run: how the previous
 * worker of this database ended (its state's name, since when, its last
 * committed tick, and who called stop(), if anyone: pid 0 and role "" when
 * no one).
 */
extern void server_start_previous_run(const char *state_name, TimestampTz since,
									  TimestampTz last_ok_at, int stop_requested_by,
									  const char *stop_requested_role);

/* In the worker: it waited on a standby and recovery has ended now. */
extern void server_start_promoted(void);

/*
 * What this start says about the gap before the first heartbeat, for
 * Python's ledger: filled by the shim once, before its first tick.  The
 * strings stay this process's.
 */
struct aw_start_facts;
extern void server_start_describe(struct aw_start_facts *facts);

/* A timestamp as Unix seconds, 0 for none: what the shim hands Python. */
extern double server_start_unix_seconds(TimestampTz at);

#endif							/* ALIVE_WORKER_SERVER_START_H */
