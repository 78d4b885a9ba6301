/*-------------------------------------------------------------------------
 *
 * client_probe.c
 *		The client-path probe: a new session, opened as a client's is, that
 *		writes and commits.
 *
 * A heartbeat in the worker's own session proves that the server commits.
 * It cannot see what stops a *new* session: pg_hba.conf, CONNECT revoked,
 * ALLOW_CONNECTIONS false, a CONNECTION LIMIT, max_connections used up, or
 * the database's and role's settings.  Every alive_worker.probe_interval the
 * worker connects through the server's own Unix-domain socket, with libpq
 * as any client, as alive_worker.probe_role, and writes and commits: it
 * creates a large object and unlinks it, in one transaction.  That takes a
 * transaction ID, writes WAL and commits with the probe session's own
 * settings (default_transaction_read_only refuses it with 25006, as it
 * refuses a client's INSERT; synchronous_commit waits for a standby as a
 * client's commit does), and it runs no code of any table.  An INSERT into
 * the heartbeat table would run its triggers, rules, defaults, domain
 * checks, index expressions and row security policies as the probe role,
 * and whoever wrote the functions they call (a lower role may own one, and
 * replace it at will; a database owner sets its search_path) would gain the
 * probe role's rights.  pg_largeobject_metadata is a system catalog: only a
 * superuser can put code on it.  The heartbeat table is written by the
 * worker's own session, whose table code runs as the table's owner.
 *
 * The waits are the worker's: its latch (SIGTERM ends the probe at once),
 * postmaster death, and alive_worker.probe_timeout for the whole probe,
 * connection included.  PostgreSQL 16's libpq-be-fe-helpers.h offers the
 * same loop (libpqsrv_connect, libpqsrv_get_result) without a deadline; this
 * one is written out so that it has one, and so that 15 has it too.  As
 * those helpers do, the socket is counted against the backend's files with
 * AcquireExternalFD.
 *
 * A leaf: it takes the settings and returns what happened; the shim records
 * it in the status slot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq-fe.h"

#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

#include "client_probe.h"
#include "schedule.h"

/*
 * The probe's write: one statement, committed on its own (an implicit
 * transaction), every name schema-qualified (the session's search_path is
 * the probe role's and its database's).  lo_create(0) picks a free OID; the
 * creator owns the object and may unlink it: no grant is needed.  From
 * PostgreSQL 16 the server refuses lo_create() in a read-only transaction;
 * 15 lets it run, so the transaction's read-only flag is read with it, and
 * a read-only probe fails on every major.
 */
#define PROBE_STATEMENT \
	"SELECT pg_catalog.lo_unlink(pg_catalog.lo_create(0)), pg_catalog.current_setting('transaction_read_only')"

/* The first directory of unix_socket_directories: where clients connect. */
static const char *
socket_directory(char *buffer, size_t size)
{
	const char *directories = GetConfigOption("unix_socket_directories", false, false);
	const char *comma;
	size_t		length;

	if (directories == NULL || directories[0] == '\0')
		return NULL;
	while (*directories == ' ')
		directories++;
	comma = strchr(directories, ',');
	length = comma ? (size_t) (comma - directories) : strlen(directories);
	while (length > 0 && directories[length - 1] == ' ')
		length--;
	if (length == 0 || length >= size)
		return NULL;
	memcpy(buffer, directories, length);
	buffer[length] = '\0';
	return buffer;
}

static void
fail(ProbeResult *result, const char *sqlstate, const char *message)
{
	result->ok = false;
	strlcpy(result->sqlstate, sqlstate ? sqlstate : "", sizeof(result->sqlstate));
	strlcpy(result->message, message ? message : "", sizeof(result->message));
}

/*
 * The server's message and SQLSTATE.  A refused connection has no PGresult:
 * libpq keeps the server's FATAL in its own message, which with
 * PQERRORS_VERBOSE reads "...: FATAL:  42501: permission denied ...".
 * Anything else (no server at the socket, say) is libpq's own, class 08.
 */
static void
fail_with_connection(ProbeResult *result, PGconn *conn, const PGresult *res, const char *what)
{
	char		message[PROBE_MESSAGE_SIZE];
	char		sqlstate[6] = "08006";
	const char *text = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *fatal;
	const char *end;

	if (text != NULL && code != NULL)
		strlcpy(sqlstate, code, sizeof(sqlstate));
	else
	{
		text = conn ? PQerrorMessage(conn) : "out of memory";
		fatal = strstr(text, "FATAL:  ");
		if (fatal != NULL && strspn(fatal + 8, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5 &&
			strncmp(fatal + 13, ": ", 2) == 0)
		{
			memcpy(sqlstate, fatal + 8, 5);
			text = fatal + 15;
		}
	}
	/* The first line: VERBOSE adds DETAIL and LOCATION lines after it. */
	end = strchr(text, '\n');
	snprintf(message, sizeof(message), "%s: %.*s", what,
			 end ? (int) (end - text) : (int) strlen(text), text);
	fail(result, sqlstate, message);
}

/* The probe in flight's target->stopping: the worker's SIGTERM flag. */
static const volatile sig_atomic_t *stopping = NULL;

/*
 * Waits for the socket (read or write) until the deadline; false on a
 * timeout, SIGTERM or the postmaster's death, which the result then says
 * (the shim exits on the last).
 */
static bool
wait_for_socket(PGconn *conn, int events, int64 deadline_us, ProbeResult *result)
{
	for (;;)
	{
		int64		remaining_ms = (deadline_us - monotonic_us() + 999) / 1000;
		int			rc;

		if (*stopping)
		{
			fail(result, "57014", "client-path probe abandoned: the worker is stopping");
			return false;
		}
		if (remaining_ms <= 0)
		{
			fail(result, "57014", "client-path probe timed out (alive_worker.probe_timeout)");
			result->timed_out = true;
			return false;
		}
		rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_POSTMASTER_DEATH | WL_TIMEOUT | events,
							   PQsocket(conn), (long) remaining_ms, PG_WAIT_EXTENSION);
		if (rc & WL_POSTMASTER_DEATH)
		{
			fail(result, "57P01", "client-path probe abandoned: the postmaster died");
			result->postmaster_died = true;
			return false;
		}
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			return true;
	}
}

static bool
connect_until(PGconn *conn, int64 deadline_us, ProbeResult *result)
{
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;

	for (;;)
	{
		if (status == PGRES_POLLING_OK)
			return true;
		if (status == PGRES_POLLING_FAILED)
		{
			fail_with_connection(result, conn, NULL, "cannot connect");
			return false;
		}
		if (!wait_for_socket(conn, status == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
							 deadline_us, result))
			return false;
		status = PQconnectPoll(conn);
	}
}

/* The INSERT's result, read without blocking; NULL with result set on failure. */
static PGresult *
result_until(PGconn *conn, int64 deadline_us, ProbeResult *result)
{
	PGresult   *last = NULL;

	for (;;)
	{
		PGresult   *next;

		while (PQisBusy(conn))
		{
			if (!wait_for_socket(conn, WL_SOCKET_READABLE, deadline_us, result))
			{
				PQclear(last);
				return NULL;
			}
			if (!PQconsumeInput(conn))
			{
				PQclear(last);
				fail_with_connection(result, conn, NULL, "connection lost");
				return NULL;
			}
		}
		next = PQgetResult(conn);
		if (next == NULL)
			return last;
		PQclear(last);
		last = next;
	}
}

static void cancel_statement(PGconn *conn);

/* Notices of the probe's session (a trigger's RAISE NOTICE, say) are nobody's business here. */
static void
ignore_notice(void *arg, const char *message)
{
}

/*
 * Sends one statement and reads its result, kept for the caller to free;
 * false, with result set, unless it is of the status expected.
 */
static bool
run_until(PGconn *conn, const char *sql, ExecStatusType expected, int64 deadline_us,
		  ProbeResult *result, PGresult **kept)
{
	PGresult   *res;

	if (!PQsendQuery(conn, sql))
	{
		fail_with_connection(result, conn, NULL, "cannot send the probe's statement");
		return false;
	}
	if ((res = result_until(conn, deadline_us, result)) == NULL)
	{
		if (result->message[0] == '\0')
			fail(result, "XX000", "the probe's statement returned no result");
		else
			cancel_statement(conn);
		return false;
	}
	if (PQresultStatus(res) != expected)
	{
		fail_with_connection(result, conn, res, "cannot write");
		PQclear(res);
		return false;
	}
	*kept = res;
	return true;
}

/* A probe cut short leaves no statement running in the server: a sync rep wait, say. */
static void
cancel_statement(PGconn *conn)
{
	PGcancel   *cancel = PQgetCancel(conn);
	char		ignored[256];

	if (cancel != NULL)
	{
		(void) PQcancel(cancel, ignored, sizeof(ignored));
		PQfreeCancel(cancel);
	}
}

void
client_probe_run(const ClientProbeTarget *target, ProbeResult *result)
{
	char		directory[MAXPGPATH];
	char		port[16];
	char		timeout_s[16];
	const char *keywords[8];
	const char *values[8];
	int			k = 0;
	int64		started_us = monotonic_us();
	int64		deadline_us = started_us + (int64) target->timeout_ms * 1000;
	PGconn	   *conn;
	PGresult   *written;
	const char *superuser;

	memset(result, 0, sizeof(*result));
	stopping = target->stopping;
	if (socket_directory(directory, sizeof(directory)) == NULL)
	{
		fail(result, "08001", "cannot connect: the server has no Unix-domain socket (unix_socket_directories is empty)");
		return;
	}
	snprintf(port, sizeof(port), "%d", PostPortNumber);
	snprintf(timeout_s, sizeof(timeout_s), "%d", Max(2, (target->timeout_ms + 999) / 1000));
	keywords[k] = "host";
	values[k++] = directory;
	keywords[k] = "port";
	values[k++] = port;
	keywords[k] = "dbname";
	values[k++] = target->database;
	keywords[k] = "user";
	values[k++] = target->role;
	keywords[k] = "application_name";
	values[k++] = "alive_worker probe";
	keywords[k] = "connect_timeout";
	values[k++] = timeout_s;
	keywords[k] = NULL;
	values[k] = NULL;

	/* The socket counts against this process's files, as a client library's would. */
	if (!AcquireExternalFD())
	{
		fail(result, "53000", "cannot connect: the worker has no file descriptor left for the probe's socket");
		return;
	}
	conn = PQconnectStartParams(keywords, values, false);
	if (conn != NULL)
		(void) PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
	if (conn == NULL || PQstatus(conn) == CONNECTION_BAD ||
		!connect_until(conn, deadline_us, result))
	{
		if (conn != NULL && result->message[0] == '\0')
			fail_with_connection(result, conn, NULL, "cannot connect");
		else if (conn == NULL)
			fail(result, "53200", "cannot connect: out of memory");
		PQfinish(conn);
		ReleaseExternalFD();
		result->duration_us = monotonic_us() - started_us;
		return;
	}

	PQsetNoticeProcessor(conn, ignore_notice, NULL);
	superuser = PQparameterStatus(conn, "is_superuser");
	if (superuser != NULL && strcmp(superuser, "on") == 0)
	{
		fail(result, "42501", "refused to write: the probe role is a superuser, which clients are not "
			 "(it takes the slots reserved for superusers and passes limits clients are held to; "
			 "make alive_worker.probe_role an ordinary role)");
		goto done;
	}

	/* The write and its commit, where a synchronous standby is waited for, as a client's. */
	if (run_until(conn, PROBE_STATEMENT, PGRES_TUPLES_OK, deadline_us, result, &written))
	{
		if (PQntuples(written) == 1 && strcmp(PQgetvalue(written, 0, 1), "on") == 0)
			fail(result, "25006", "cannot write: the probe's transaction is a read-only transaction "
				 "(transaction_read_only is on, as default_transaction_read_only made it)");
		else
			result->ok = true;
		PQclear(written);
	}
done:
	PQfinish(conn);
	ReleaseExternalFD();
	result->duration_us = monotonic_us() - started_us;
}
