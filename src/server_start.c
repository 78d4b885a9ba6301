/*-------------------------------------------------------------------------
 *
 * server_start.c
 *		The facts that explain a gap in the heartbeats, kept from the moment
 *		they are known until the worker's next commit can write them down.
 *
 * A heartbeat cannot be written while the server is down, so the ledger
 * (issue 23) records an outage when heartbeats resume, from what the start
 * leaves behind: pg_control's state as the postmaster found it (shut down,
 * or a crash to recover from), how many times the postmaster made shared
 * memory (more than once: a backend crashed and the cluster was reset), the
 * previous worker's state in its slot (stopped by stop(), and by whom), and
 * whether this worker waited for a promotion.  The postmaster's values reach
 * the workers it forks as copies of these variables.
 *
 * A leaf: it takes values and hands them to the bridge, nothing more.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_control.h"
#include "common/controldata_utils.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "alive_worker/_bridge.h"
#include "server_start.h"

/* Postmaster's, inherited by every worker it forks. */
static bool control_file_read = false;
static bool crash_recovery = false;
static pg_time_t control_file_time = 0;
static int	shared_memory_made = 0;
static TimestampTz last_reset_at = 0;

/* The worker's own. */
static char previous_state[32] = "";
static TimestampTz previous_state_since = 0;
static TimestampTz previous_last_ok_at = 0;
static int	previous_stop_by = 0;
static char previous_stop_role[NAMEDATALEN] = "";
static TimestampTz promoted_at = 0;

void
server_start_read_control_file(void)
{
	bool		crc_ok;
	ControlFileData *control = get_controlfile(DataDir, &crc_ok);

	if (!crc_ok)
	{
		/* Not ours to judge: the startup process will say so loudly. */
		pfree(control);
		return;
	}
	control_file_read = true;
	control_file_time = control->time;
	/* Anything but a clean stop of a primary or a standby needs recovery. */
	crash_recovery = control->state != DB_SHUTDOWNED &&
		control->state != DB_SHUTDOWNED_IN_RECOVERY;
	pfree(control);
}

void
server_start_shared_memory_made(void)
{
	shared_memory_made++;
	if (shared_memory_made > 1)
		last_reset_at = GetCurrentTimestamp();
}

void
server_start_previous_run(const char *state_name, TimestampTz since,
						  TimestampTz last_ok_at, int stop_requested_by,
						  const char *stop_requested_role)
{
	previous_last_ok_at = last_ok_at;
	strlcpy(previous_state, state_name, sizeof(previous_state));
	previous_state_since = since;
	previous_stop_by = stop_requested_by;
	strlcpy(previous_stop_role, stop_requested_role, sizeof(previous_stop_role));
}

void
server_start_promoted(void)
{
	promoted_at = GetCurrentTimestamp();
}

/* A timestamp as Unix seconds, 0 for none: what the shim hands Python. */
double
server_start_unix_seconds(TimestampTz at)
{
	const int64 unix_epoch = (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
		SECS_PER_DAY * USECS_PER_SEC;

	return at == 0 ? 0.0 : (double) (at + unix_epoch) / USECS_PER_SEC;
}

void
server_start_describe(aw_start_facts *facts)
{
	memset(facts, 0, sizeof(*facts));
	facts->server_started_at = server_start_unix_seconds(PgStartTime);
	facts->control_file_read = control_file_read;
	facts->crash_recovery = crash_recovery;
	facts->control_file_time = (double) control_file_time;
	facts->cluster_resets = shared_memory_made > 0 ? shared_memory_made - 1 : 0;
	facts->last_reset_at = server_start_unix_seconds(last_reset_at);
	facts->previous_state = previous_state;
	facts->previous_state_since = server_start_unix_seconds(previous_state_since);
	facts->previous_last_ok_at = server_start_unix_seconds(previous_last_ok_at);
	facts->stop_requested_by = previous_stop_by;
	facts->stop_requested_role = previous_stop_role;
	facts->promoted_at = server_start_unix_seconds(promoted_at);
	facts->timeline = RecoveryInProgress() ? 0 : (int) GetWALInsertionTimeLine();
}
