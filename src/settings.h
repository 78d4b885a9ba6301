/*
 * settings.h
 *		alive_worker's settings (settings.c), read by the rest of the shim.
 */
#ifndef ALIVE_WORKER_SETTINGS_H
#define ALIVE_WORKER_SETTINGS_H

#define MIN_INTERVAL_MS 10
#define MAX_INTERVAL_MS (24 * 60 * 60 * 1000)

/* What a failing hook does (alive_worker.hook_failure) */
typedef enum HookFailure
{
	HOOK_FAILURE_LOG,			/* logged and counted; the heartbeat commits */
	HOOK_FAILURE_FAIL_TICK		/* the whole tick is rolled back */
} HookFailure;

/* Read once, at server start (PGC_POSTMASTER) */
extern char *worker_database;
extern char *worker_databases;
extern char *worker_role;

/* Changed by a reload (PGC_SIGHUP) */
extern char *table_schema;
extern char *table_name;
extern char *heartbeat_message;
extern char *tick_hook;
extern int	tick_interval_ms;
extern int	tick_timeout_ms;
extern int	hook_memory_limit_kb;
extern char *probe_role;
extern int	probe_interval_ms;
extern int	probe_timeout_ms;
extern int	retention_s;
extern int	crash_limit;
extern int	crash_window_s;
extern int	hook_failure;
extern bool clock_aligned;
extern bool back_to_back;

/* Only while shared_preload_libraries loads the library. */
extern void settings_define_server_start(void);

/* In every process that loads the library. */
extern void settings_define_reloadable(void);

/* The tick's timeout: alive_worker.tick_timeout, or by default the interval. */
extern int	tick_timeout_in_force_ms(void);

#endif							/* ALIVE_WORKER_SETTINGS_H */
