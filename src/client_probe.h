/*
 * client_probe.h
 *		The client-path probe (client_probe.c): a new session, as a client's,
 *		that writes and commits.
 */
#ifndef ALIVE_WORKER_CLIENT_PROBE_H
#define ALIVE_WORKER_CLIENT_PROBE_H

#include <signal.h>

#define PROBE_MESSAGE_SIZE 256

typedef struct ClientProbeTarget
{
	const char *database;
	const char *role;			/* alive_worker.probe_role */
	int			timeout_ms;		/* alive_worker.probe_timeout, connection included */
	const volatile sig_atomic_t *stopping;	/* set by SIGTERM: abandon the probe */
} ClientProbeTarget;

typedef struct ProbeResult
{
	bool		ok;				/* connected, wrote, committed */
	bool		timed_out;
	bool		postmaster_died;	/* abandoned: the caller must exit */
	int64		duration_us;
	char		sqlstate[6];	/* the server's, or libpq's class 08 */
	char		message[PROBE_MESSAGE_SIZE];	/* the server's own message */
} ProbeResult;

/* Runs one probe; waits end on SIGTERM, postmaster death or the timeout. */
extern void client_probe_run(const ClientProbeTarget *target, ProbeResult *result);

#endif							/* ALIVE_WORKER_CLIENT_PROBE_H */
