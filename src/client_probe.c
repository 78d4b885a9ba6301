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
 * as any client, as alive_worker.probe_role, and INSERTs one row, message
 * "alive_worker probe", into the heartbeat table, which commits with the
 * probe session's own settings.  The row is a heartbeat a client wrote.
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
#include "utils/memutils.h"
#include "lib/stringinfo.h"
#include "utils/wait_event.h"

#include "alive_worker.h"
#include "client_probe.h"
#include "schedule.h"

#define PROBE_MESSAGE "alive_worker probe"

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

/*
 * Waits for the socket (read or write) until the deadline; false on a
 * timeout or SIGTERM, which the result then says.
 */
static bool
wait_for_socket(PGconn *conn, int events, int64 deadline_us, ProbeResult *result)
{
	for (;;)
	{
		int64		remaining_ms = (deadline_us - monotonic_us() + 999) / 1000;
		int			rc;

		if (got_sigterm)
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
		rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | WL_TIMEOUT | events,
							   PQsocket(conn), (long) remaining_ms, PG_WAIT_EXTENSION);
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
 * Sends one statement (or, without parameters, several) and reads its last
 * result; false, with result set, unless it is of the status expected.
 */
static bool
run_until(PGconn *conn, const char *sql, const char *param, ExecStatusType expected,
		  int64 deadline_us, ProbeResult *result, PGresult **kept)
{
	PGresult   *res;
	bool		sent;

	if (param != NULL)
		sent = PQsendQueryParams(conn, sql, 1, NULL, &param, NULL, NULL, 0);
	else
		sent = PQsendQuery(conn, sql);
	if (!sent)
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
	if (kept != NULL)
		*kept = res;
	else
		PQclear(res);
	return true;
}

/*
 * The table's code (triggers, rules, defaults, column types) runs in the
 * probe's session as the probe role, as a client's would.  Its owner, and a
 * role granted TRIGGER on it, would gain through the probe any right the
 * probe role has and they have not; so would those of its partitions, where
 * the row lands.  The probe writes only when every such role already has the
 * probe role's rights (pg_has_role(..., 'USAGE')).  The
 * table is locked first (ROW EXCLUSIVE, as the INSERT would), so that no
 * trigger or rule is added and no owner changes before the INSERT.  A
 * superuser probe is refused before anything runs: the table's code would
 * run as a superuser, and it would take the slots reserved for superusers.
 * Everything is schema-qualified, operators included: the session's
 * search_path is the probe role's and its database's.
 */
static const char *const lenders_query =
	"WITH tables AS (SELECT c.oid, c.relowner, c.relacl FROM pg_catalog.pg_class c"
	"                 WHERE c.oid OPERATOR(pg_catalog.=) %s::pg_catalog.regclass"
	"                    OR c.oid OPERATOR(pg_catalog.=) ANY (ARRAY("
	"                        SELECT t.relid FROM pg_catalog.pg_partition_tree(%s::pg_catalog.regclass) t)))"
	"SELECT COALESCE(r.rolname::pg_catalog.text, 'PUBLIC')"
	" FROM (SELECT relowner AS role FROM tables"
	"       UNION"
	"       SELECT a.grantee FROM tables, pg_catalog.aclexplode(tables.relacl) a"
	"        WHERE a.privilege_type OPERATOR(pg_catalog.=) 'TRIGGER') g"
	" LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) g.role"
	" WHERE g.role OPERATOR(pg_catalog.=) 0::pg_catalog.oid"
	"    OR NOT pg_catalog.pg_has_role(g.role, CURRENT_USER, 'USAGE')"
	" ORDER BY 1";

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
	PGresult   *res;
	PGresult   *lenders;
	const char *superuser;
	char	   *table;
	char	   *table_literal;
	char	   *begin;
	char	   *insert;
	char		message[PROBE_MESSAGE_SIZE];
	MemoryContext probe_context = NULL;
	MemoryContext caller_context = NULL;

	memset(result, 0, sizeof(*result));
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
			 "(the table's code would run as a superuser; make alive_worker.probe_role an ordinary role)");
		goto done;
	}

	/* The statements' text, freed with the context after the probe. */
	probe_context = AllocSetContextCreate(CurrentMemoryContext, "alive_worker probe", ALLOCSET_SMALL_SIZES);
	caller_context = MemoryContextSwitchTo(probe_context);
	table = psprintf("%s.%s", quote_identifier(target->schema), quote_identifier(target->table));
	table_literal = quote_literal_cstr(table);
	begin = psprintf(lenders_query, table_literal, table_literal);
	begin = psprintf("BEGIN; LOCK TABLE %s IN ROW EXCLUSIVE MODE; %s", table, begin);
	insert = psprintf("INSERT INTO %s (message) VALUES ($1)", table);
	if (!run_until(conn, begin, NULL, PGRES_TUPLES_OK, deadline_us, result, &lenders))
		goto done;
	if (PQntuples(lenders) > 0)
	{
		StringInfoData names;

		initStringInfo(&names);
		for (int i = 0; i < PQntuples(lenders); i++)
			appendStringInfo(&names, "%s%s", i > 0 ? ", " : "", PQgetvalue(lenders, i, 0));
		snprintf(message, sizeof(message),
				 "refused to write: the table's code would run with the probe role's rights, "
				 "which %s (owner, or granted TRIGGER) lacks: GRANT the probe role to it",
				 names.data);
		fail(result, "42501", message);
		PQclear(lenders);
		goto done;
	}
	PQclear(lenders);
	if (!run_until(conn, insert, PROBE_MESSAGE, PGRES_COMMAND_OK, deadline_us, result, &res))
		goto done;
	if (strcmp(PQcmdTuples(res), "1") != 0)
	{
		fail(result, "55000", "the probe's INSERT wrote no row: a trigger or rule discarded it");
		PQclear(res);
		goto done;
	}
	PQclear(res);
	/* The commit, where a synchronous standby is waited for, as a client's. */
	if (run_until(conn, "COMMIT", NULL, PGRES_COMMAND_OK, deadline_us, result, NULL))
		result->ok = true;
done:
	if (probe_context != NULL)
	{
		MemoryContextSwitchTo(caller_context);
		MemoryContextDelete(probe_context);
	}
	PQfinish(conn);
	ReleaseExternalFD();
	result->duration_us = monotonic_us() - started_us;
}
