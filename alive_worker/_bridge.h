/*
 * _bridge.h
 *		The C/Python boundary, declared once.
 *
 * C owns the process, the transaction and the status; the bridge turns
 * Python's calls into guarded PostgreSQL calls and PostgreSQL's ERRORs into
 * Python exceptions; Python decides what a tick writes (docs/DEVELOPMENT.md,
 * "The C/Python boundary").  One table each way:
 *
 * - C to Python: the entry points between the EMBEDDING markers (written in
 *   Python, alive_worker/_worker.py, exported by cffi) and those between the
 *   SHIM CALLS markers (the bridge's C, for the shim): the shim finds them
 *   all with dlsym, into EmbeddedPython (src/python_loader.h).
 * - Python to C: the functions between the CDEF markers, the bridge's.
 *
 * Nothing else crosses: what the shim tells Python (the settings, the tick,
 * the facts of the start, the probe's outcome, the flags that end a hook)
 * is data it hands over through these calls, and the bridge calls no
 * function of the shim.
 *
 * Only plain C types appear here: this header is read by cffi's cdef parser
 * and included after <Python.h> by the generated module, so it must not pull
 * in postgres.h (which _bridge.c includes first, as PostgreSQL requires).
 * The lines between the EMBEDDING markers and between the CDEF markers are
 * given to cffi verbatim (see _embedding.py).
 */
#ifndef ALIVE_WORKER_BRIDGE_H
#define ALIVE_WORKER_BRIDGE_H

#include <signal.h>

/*
 * Implemented in Python (alive_worker/_worker.py) and exported by cffi's
 * embedding API; the shim finds them with dlsym.  Declared here too, so that
 * cffi's generated definitions have prototypes, as PostgreSQL's
 * -Wmissing-prototypes asks.
 */
/* EMBEDDING BEGIN */
/*
 * The settings Python acts on: one snapshot taken by the shim at start and
 * after each reload (generation counts them).  The strings are the server's
 * and last until the next reload: Python copies them when generation
 * changes.  Numbers are in the settings' base units.
 */
typedef struct aw_settings
{
	int			generation;
	const char *database;		/* alive_worker.database */
	const char *role;
	const char *schema;
	const char *table;
	const char *message;
	const char *hook;
	const char *probe_role;
	int			interval_ms;
	int			retention_s;
	int			hook_memory_limit_kb;
} aw_settings;

/*
 * What this worker's start says about the gap before its first heartbeat
 * (src/server_start.c): times are Unix seconds, 0 when there is none.
 */
typedef struct aw_start_facts
{
	double		server_started_at;	/* pg_postmaster_start_time() */
	int			control_file_read;	/* 0: the next two are not known */
	int			crash_recovery; /* pg_control did not say "shut down" */
	double		control_file_time;	/* pg_control's last update before the start */
	int			cluster_resets; /* after a backend's crash, since the start */
	double		last_reset_at;
	const char *previous_state; /* the previous worker's; "" when none */
	double		previous_state_since;
	double		previous_last_ok_at;	/* its last committed tick */
	int			stop_requested_by;	/* stop()'s caller: pid, 0 when none */
	const char *stop_requested_role;
	double		promoted_at;	/* this worker waited for recovery to end */
	int			timeline;		/* of WAL insertion; 0 in recovery */
} aw_start_facts;

/* The client-path probe's last outcome (times in Unix seconds, 0: none). */
typedef struct aw_probe_facts
{
	int			probing;		/* a probe role is set, and a probe has run */
	int			failing;		/* its last probe failed */
	double		last_probe_at;
	double		last_ok_at;
	char		sqlstate[6];
	char		message[256];
} aw_probe_facts;

/*
 * One tick, as the shim hands it to Python, and what Python hands back in
 * it: everything that crosses in a tick but the statements.
 */
typedef struct aw_tick
{
	/* Given by the shim */
	long long	heartbeat_number;	/* this tick's: heartbeats committed + 1 */
	int			previous_committed; /* the last tick's commit went through */
	const aw_settings *settings;
	const aw_start_facts *start;	/* filled once, before the first tick */
	aw_probe_facts probe;		/* filled while alive_worker.probe_role is set */
	int			last_before_shutdown;	/* 1: the server shuts down; no hook */
	/* Given back by Python, for the status the shim writes */
	int			retention_reported; /* 1: retention_error is news */
	char		retention_error[256];	/* why retention deletes nothing; "": it works */
} aw_tick;

int			aw_python_start(const aw_settings *settings);
int			aw_python_tick(aw_tick *tick);
int			aw_python_hook(void);
/* EMBEDDING END */

/*
 * The flags that say why a running hook must end, set by the shim's signal
 * handlers: the bridge reads them between the worker's short waits for the
 * hook host (aw_hook_wait_cause).  Given once, at start.
 */
typedef struct aw_worker_flags
{
	const volatile sig_atomic_t *stop_requested;	/* SIGTERM */
	const volatile sig_atomic_t *timeout_fired; /* the tick timeout cancelled the tick */
} aw_worker_flags;

/* SHIM CALLS BEGIN */
/* Once Python has started: the flags the bridge reads (above). */
extern void aw_bridge_start(const aw_worker_flags *flags);

/*
 * Called by the C shim after every call into Python, with what the call
 * returned: forgets the per-call state (open subtransactions, result rows),
 * then, if Python failed or the transaction did, raises the recorded error
 * at elevel (ERROR for a tick, FATAL at start).  Returns normally otherwise.
 */
extern void aw_finish_python_call(int result, int elevel);

/*
 * After a hook, however it ended: the cause that ended the hook host in
 * this call, if any (aw_hook_wait_cause saw it), which it then forgets.
 */
extern int	aw_hook_end(void);
/* SHIM CALLS END */

/* CDEF BEGIN */
/* Return codes of every aw_* call that may fail. */
#define AW_OK 1
#define AW_ERROR 2

/* Server log levels Python may write at; the bridge maps them to elevels. */
#define AW_LOG_DEBUG 1
#define AW_LOG_LOG 2
#define AW_LOG_WARNING 3

/* Why a running hook is ended (the worker ends the hook host). */
#define AW_CAUSE_NONE 0
#define AW_CAUSE_CANCEL 1
#define AW_CAUSE_TIMEOUT 2
#define AW_CAUSE_STOP 3
#define AW_CAUSE_POSTMASTER_DEATH 4

/* The last PostgreSQL ERROR caught on the calling thread, as plain strings. */
typedef struct aw_error
{
	char		sqlstate[6];
	const char *message;
	const char *detail;
	const char *hint;
	const char *context;
} aw_error;

typedef struct aw_plan aw_plan;

/*
 * Privileges the worker's role must hold on the table of a plan that runs as
 * that table's owner (aw_prepare_as_owner): PostgreSQL's ACL_* bits.
 */
#define AW_PRIVILEGE_INSERT 1
#define AW_PRIVILEGE_SELECT 2
#define AW_PRIVILEGE_DELETE 8
/* Not a privilege: the extension's own table, run as its owner (_bridge_statements.c). */
#define AW_EXTENSION_TABLE 1073741824

const aw_error *aw_last_error(void);
void		aw_record_error(const char *sqlstate, const char *message,
							const char *detail, const char *hint,
							const char *context);

int			aw_prepare(const char *query, int nargs, const char *const *argtypes,
					   int keep, aw_plan **plan_out);
/*
 * A plan of a statement on table schema.table that is prepared and executed
 * as the table's owner, in a security-restricted operation, once the worker's
 * role is found to hold privileges on it: see run_as_table_owner().  for_hook:
 * a hook's statement, run as the owner only where that lends the worker's
 * role no rights (table_owner_run_as()).
 */
int			aw_prepare_as_owner(const char *query, int nargs, const char *const *argtypes,
								int keep, const char *schema, const char *table,
								int privileges, int for_hook, aw_plan **plan_out);
/*
 * rows_out: the rows the statement returned, for aw_result_value; -1 if it
 * returns none (an INSERT without RETURNING).  aw_execute_text is
 * aw_execute for a plan of one non-null value, with no array to fill, and
 * its rows_out is the rows the statement processed (inserted, say).
 */
int			aw_execute(aw_plan *plan, const char *const *values, long *rows_out);
/*
 * aw_execute for a hook's statement: one that returns more than max_rows
 * rows (0: any number) fails with 54000, the executor stopped one row past.
 */
int			aw_execute_bounded(aw_plan *plan, const char *const *values, long max_rows,
							   long *rows_out);
int			aw_execute_text(aw_plan *plan, const char *value, long *rows_out);
/* Rows the last statement returned or changed (an UPDATE's, a DELETE's). */
long		aw_rows_processed(void);
void		aw_free_plan(aw_plan *plan);
/* Columns of the last statement's rows; -1 if it returned none (INSERT). */
int			aw_result_columns(void);
int			aw_result_value(long row, int column, const char **value_out);

int			aw_quote_identifier(const char *name, const char **quoted_out);
int			aw_current_role(const char **name_out);
int			aw_setting(const char *name, const char **value_out);
int			aw_log(int elevel, const char *message);
int			aw_log_enabled(int elevel);

int			aw_subtransaction_begin(void);
int			aw_subtransaction_end(int commit);

/*
 * Plans without keep=True are the tick's: Python forgets its handles at the
 * start of the next tick, then this frees what the bridge held for them.
 */
void		aw_forget_tick_plans(void);
/* Plans alive in the bridge, kept or not: for tests and the memory's sake. */
long		aw_live_plans(void);

/* Why a hook running in the hook host must end now (AW_CAUSE_*). */
int			aw_hook_wait_cause(void);

/*
 * The hook host's descendants (_hook_host.c): the worker adopts every
 * process the hook starts, before it starts a host (0, or -1 and errno),
 * and SIGKILLs and reaps them all (how many, or -1).
 */
int			aw_hook_host_adopt(void);
int			aw_hook_host_end_descendants(void);
/* CDEF END */

#endif							/* ALIVE_WORKER_BRIDGE_H */
