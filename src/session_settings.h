/*
 * session_settings.h
 *		The worker's session held to what a client's new session gets
 *		(session_settings.c).
 */
#ifndef ALIVE_WORKER_SESSION_SETTINGS_H
#define ALIVE_WORKER_SESSION_SETTINGS_H

/* Before connecting: the server's values, as inherited from the postmaster. */
extern void session_settings_capture_server_level(void);

/* After a reload: the server's values, as the configuration files say. */
extern void session_settings_reread_server_level(void);

/*
 * In the tick's transaction, before its first snapshot: reads
 * pg_db_role_setting and applies default_transaction_read_only as a new
 * session would take it, and synchronous_commit at least the server's.
 */
extern void session_settings_apply(void);

#endif							/* ALIVE_WORKER_SESSION_SETTINGS_H */
