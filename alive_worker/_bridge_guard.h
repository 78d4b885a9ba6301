/*
 * _bridge_guard.h
 *		What the bridge's files share: the guard every entry point runs its
 *		work through (_bridge.c), and the last statement's rows
 *		(_bridge_statements.c).  Private to the embedding library.
 */
#ifndef ALIVE_WORKER_BRIDGE_GUARD_H
#define ALIVE_WORKER_BRIDGE_GUARD_H

/* How run_guarded treats the transaction around the work it runs. */
typedef enum GuardMode
{
	GUARD_STATEMENT,			/* refuse if failed; own subxact when nested */
	GUARD_CONTROL,				/* refuse if failed; no subxact of its own */
	GUARD_ANY_STATE				/* runs when failed too; its error changes nothing */
} GuardMode;

/*
 * The SQLSTATEs the bridge records itself, as text: PostgreSQL's ERRCODE_*
 * are packed, and unpack_sql_state() has one static buffer, while
 * aw_record_error also runs on a hook's threads.
 */
#define SQLSTATE_FEATURE_NOT_SUPPORTED "0A000"
#define SQLSTATE_INVALID_SQL_STATEMENT_NAME "26000"
#define SQLSTATE_IN_FAILED_SQL_TRANSACTION "25P02"
#define SQLSTATE_QUERY_CANCELED "57014"
#define SQLSTATE_SYSTEM_ERROR "58000"
#define SQLSTATE_INTERNAL_ERROR "XX000"

/*
 * Runs body(arg), catching any ERROR it raises.  Returns AW_OK, or AW_ERROR
 * with the error recorded and the transaction left as the mode says.
 */
extern int	run_guarded(GuardMode mode, void (*body) (void *), void *arg);

/* PostgreSQL runs on the worker's thread only; others are refused. */
extern bool on_worker_thread(void);
extern int	refuse_other_thread(void);

/* The last statement's rows are gone (its error, or the tick's end). */
extern void forget_result_rows(void);

#endif							/* ALIVE_WORKER_BRIDGE_GUARD_H */
