/*-------------------------------------------------------------------------
 *
 * crash_guard.c
 *		The worker's record of how its earlier runs ended, kept in a small
 *		file in the data directory so that it survives crash restarts.
 *
 * After a worker crash the postmaster resets every session and restarts the
 * worker at once, whatever bgw_restart_time says.  A worker that crashes at
 * every start would so keep the whole cluster resetting.  The record lets
 * the next run see that its predecessors crashed, and stay idle once they
 * crashed too often; it also spaces out attempts to connect when the
 * database or role setting is wrong, since each failed attempt is a FATAL.
 *
 * A run counts as a crash when it neither exited through proc_exit() (which
 * FATAL and normal exits do) nor was told to quit by the postmaster (SIGQUIT,
 * sent when another process crashed or at immediate shutdown): that leaves
 * signals such as SIGKILL and SIGSEGV aimed at the worker itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#include "crash_guard.h"

typedef struct RunRecord
{
	int64		postmaster_start;	/* PgStartTime of the server that wrote it */
	bool		running;		/* set at start, cleared at exit */
	int			connect_failures;	/* attempts since the last connection */
	int			crash_count;
	int64		crash_times[MAX_RECORDED_CRASHES];	/* seconds since epoch */
} RunRecord;

static RunRecord record;
static char record_path[MAXPGPATH];
static char quit_marker_path[MAXPGPATH];

static int64
now_seconds(void)
{
	return (int64) time(NULL);
}

/* Missing, unreadable or from another server start: a fresh record. */
static void
read_record(void)
{
	FILE	   *file = fopen(record_path, "r");
	char		key[32];
	long long	value;

	memset(&record, 0, sizeof(record));
	if (file == NULL)
		return;
	while (fscanf(file, "%31s %lld", key, &value) == 2)
	{
		if (strcmp(key, "postmaster_start") == 0)
			record.postmaster_start = value;
		else if (strcmp(key, "running") == 0)
			record.running = value != 0;
		else if (strcmp(key, "connect_failures") == 0)
			record.connect_failures = (int) value;
		else if (strcmp(key, "crash") == 0 && record.crash_count < MAX_RECORDED_CRASHES)
			record.crash_times[record.crash_count++] = value;
	}
	fclose(file);
	if (record.postmaster_start != (int64) PgStartTime)
		memset(&record, 0, sizeof(record));
}

/* Written to a temporary file and renamed, so a reader sees all or nothing. */
static void
write_record(void)
{
	char		temporary_path[MAXPGPATH];
	FILE	   *file;

	record.postmaster_start = (int64) PgStartTime;
	snprintf(temporary_path, sizeof(temporary_path), "%s.tmp", record_path);
	file = fopen(temporary_path, "w");
	if (file == NULL)
	{
		elog(WARNING, "alive_worker could not write \"%s\": %m", temporary_path);
		return;
	}
	fprintf(file, "postmaster_start %lld\nrunning %d\nconnect_failures %d\n",
			(long long) record.postmaster_start, record.running ? 1 : 0,
			record.connect_failures);
	for (int i = 0; i < record.crash_count; i++)
		fprintf(file, "crash %lld\n", (long long) record.crash_times[i]);
	if (fclose(file) != 0 || rename(temporary_path, record_path) != 0)
		elog(WARNING, "alive_worker could not write \"%s\": %m", record_path);
}

/*
 * The crashes that count at this start, at now (seconds since the epoch):
 * those recorded (crash_times, crash_count of them, oldest first), with this
 * start's if the previous run crashed (the oldest given up when the record
 * is full), less those not within window_seconds.  Rewrites crash_times, of
 * room for MAX_RECORDED_CRASHES; returns how many it keeps.
 */
int
crash_guard_count_crashes(int64 *crash_times, int crash_count, bool previous_run_crashed,
						  int64 now, int window_seconds)
{
	int64		horizon = now - window_seconds;
	int			kept = 0;

	if (previous_run_crashed)
	{
		if (crash_count == MAX_RECORDED_CRASHES)
		{
			memmove(crash_times, crash_times + 1, sizeof(int64) * (MAX_RECORDED_CRASHES - 1));
			crash_count--;
		}
		crash_times[crash_count++] = now;
	}
	for (int i = 0; i < crash_count; i++)
		if (crash_times[i] > horizon)
			crash_times[kept++] = crash_times[i];
	return kept;
}

/* Whether crash_count recent crashes disable the worker under crash_limit (0: never). */
bool
crash_guard_holds(int crash_count, int crash_limit)
{
	return crash_limit > 0 && crash_count >= crash_limit;
}

static void
mark_exited(int code, Datum arg)
{
	record.running = false;
	write_record();
}

/*
 * The postmaster's SIGQUIT: leave a marker that this run did not crash, then
 * exit at once as PostgreSQL's own handler does.  Only async-signal-safe
 * calls here.
 */
static void
handle_sigquit(SIGNAL_ARGS)
{
	int			fd = open(quit_marker_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd >= 0)
		close(fd);
	_exit(2);
}

void
crash_guard_start(const char *worker_name, int crash_limit, int window_seconds,
				  CrashGuardVerdict *verdict)
{
	bool		told_to_quit;

	snprintf(record_path, sizeof(record_path), "%s/alive_worker.%s.state",
			 DataDir, worker_name);
	snprintf(quit_marker_path, sizeof(quit_marker_path), "%s/alive_worker.%s.quit",
			 DataDir, worker_name);
	pqsignal(SIGQUIT, handle_sigquit);

	read_record();
	told_to_quit = unlink(quit_marker_path) == 0;
	record.crash_count = crash_guard_count_crashes(record.crash_times, record.crash_count,
												   record.running && !told_to_quit,
												   now_seconds(), window_seconds);

	verdict->recent_crashes = record.crash_count;
	verdict->disabled = crash_guard_holds(record.crash_count, crash_limit);
	verdict->connect_failures = record.connect_failures;

	record.running = true;
	record.connect_failures++;
	write_record();
	on_proc_exit(mark_exited, (Datum) 0);
}

bool
crash_guard_still_disabled(int crash_limit)
{
	/* Old crashes still count: waiting out the window would only loop slower. */
	return crash_guard_holds(record.crash_count, crash_limit);
}

void
crash_guard_connected(void)
{
	record.connect_failures = 0;
	write_record();
}

const char *
crash_guard_record_path(void)
{
	return record_path;
}
