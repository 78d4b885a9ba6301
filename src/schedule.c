/*
 * schedule.c
 *		When the worker ticks: the grid of deadlines, the timer that wakes
 *		the worker at each, and the waits in which it writes nothing
 *		(recovery, the crash guard).
 *
 * Deadlines are kept in microseconds on the monotonic clock, so that a
 * change of the wall clock never adds or drops a tick; only
 * alive_worker.clock_aligned takes the grid's phase from the wall clock.
 */
#include "postgres.h"

#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "alive_worker/_compat.h"	/* what differs between majors */

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "alive_worker.h"
#include "crash_guard.h"
#include "disk_space.h"
#include "schedule.h"
#include "server_start.h"
#include "settings.h"
#include "tick_timeout.h"
#include "worker_status.h"

/* How often the worker reads the disk space, at most */
#define DISK_READ_PERIOD_US 1000000

/* How often a worker on a hot standby looks whether recovery has ended. */
#define RECOVERY_POLL_MS 10

/* The sleep between ticks: latch, postmaster death, and a timer at the deadline */
static WaitEventSet *tick_wait_set = NULL;
static int	deadline_timer = -1;

/* What pg_stat_activity shows while the worker sleeps */
static uint32 sleep_wait_event = PG_WAIT_EXTENSION;

static int64
clock_us(clockid_t clock)
{
	struct timespec now;

	clock_gettime(clock, &now);
	return (int64) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

int64
monotonic_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

/* The tick's timeout: tick_timeout, or by default the interval. */
int
tick_timeout_in_force_ms(void)
{
	return tick_timeout_ms > 0 ? tick_timeout_ms : tick_interval_ms;
}

/*
 * When the tick due at tick_deadline must be done, on the monotonic clock:
 * the timeout after its deadline, so that a late tick does not run into
 * the next, but at least half of it after it began.
 */
int64
tick_must_end_at(int64 tick_deadline)
{
	int64		timeout = (int64) tick_timeout_in_force_ms() * 1000;

	return Max(tick_deadline + timeout, monotonic_us() + timeout / 2);
}

/*
 * Sleeps until the latch is set or timeout_ms passes (-1: no timeout), then
 * acts on signals.  Returns whether the settings were reloaded.
 */
bool
sleep_and_handle_signals(long timeout_ms)
{
	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
					 (timeout_ms >= 0 ? WL_TIMEOUT : 0),
					 timeout_ms, sleep_wait_event);
	ResetLatch(MyLatch);
	return worker_handle_signals();
}

/*
 * The wait between ticks: the latch, postmaster death, and a timerfd armed
 * at the deadline.  WaitLatch takes whole milliseconds, and the kernel adds
 * slack to such timeouts (0.1% of the timeout, 10 ms at 10 s), so a
 * deadline kept in microseconds would be missed by up to a millisecond and
 * more; an absolute timer on the monotonic clock wakes the worker at the
 * deadline itself.
 */
void
schedule_init(void)
{
	/* Needs shared memory, so here rather than in _PG_init. */
	sleep_wait_event = alive_worker_main_wait_event();
	deadline_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (deadline_timer < 0)
		ereport(FATAL,
				(errmsg("alive_worker could not create its tick timer: %m")));
	tick_wait_set = alive_worker_create_wait_event_set(3);
	AddWaitEventToSet(tick_wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(tick_wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(tick_wait_set, WL_SOCKET_READABLE, deadline_timer, NULL, NULL);
}

/*
 * Sleeps until the monotonic clock reaches deadline (in microseconds) or the
 * latch is set, then acts on signals.  Returns whether the settings were
 * reloaded.
 *
 * The timer repeats every interval, so on the usual path, where the next
 * deadline is the last plus the interval, it need not be set again; any
 * other deadline (a late tick, a skip, a reload, clock alignment) sets it.
 */
static bool
sleep_until(int64 deadline)
{
	static int64 timer_next = -1;	/* when the timer expires next */
	static int64 timer_period = 0;
	int64		period = (int64) tick_interval_ms * 1000;
	WaitEvent	event;

	if (deadline != timer_next || period != timer_period)
	{
		struct itimerspec at = alive_worker_timer_spec(deadline, period);

		if (timerfd_settime(deadline_timer, TFD_TIMER_ABSTIME, &at, NULL) != 0)
			ereport(FATAL,
					(errmsg("alive_worker could not set its tick timer: %m")));
		timer_next = deadline;
		timer_period = period;
	}

	if (WaitEventSetWait(tick_wait_set, -1, &event, 1, sleep_wait_event) == 1 &&
		(event.events & WL_SOCKET_READABLE))
	{
		uint64		expirations;

		/* Drain the timer, which would stay readable otherwise. */
		if (read(deadline_timer, &expirations, sizeof(expirations)) == sizeof(expirations))
			timer_next += (int64) expirations * period;
		else if (errno != EAGAIN)
			elog(DEBUG1, "alive_worker could not read its tick timer: %m");
	}
	ResetLatch(MyLatch);
	return worker_handle_signals();
}

/*
 * The deadline of the tick after the one due at tick_deadline: one interval
 * later, or, with alive_worker.clock_aligned, the next wall-clock multiple of
 * the interval at least half an interval later (the first tick, at start,
 * is off the grid; on it, that is one interval later).  Kept on the
 * monotonic clock: only the grid's phase comes from the wall clock.
 */
static int64
next_deadline(int64 tick_deadline)
{
	int64		interval = (int64) tick_interval_ms * 1000;
	int64		wall;

	if (!clock_aligned)
		return tick_deadline + interval;
	/* The wall-clock time of tick_deadline + interval / 2. */
	wall = clock_us(CLOCK_REALTIME) - monotonic_us() + tick_deadline + interval / 2;
	return tick_deadline + interval / 2 + (interval - wall % interval);
}

/* The crash guard holds: do nothing but wait for SIGTERM or a new limit. */
void
stay_idle_while_disabled(int recent_crashes)
{
	ereport(WARNING,
			(errmsg("alive_worker disabled by its crash guard: the worker crashed %d times within %d s",
					recent_crashes, crash_window_s),
			 errdetail("Each crash of the worker makes PostgreSQL reset every session of the cluster, so it stays idle instead of writing heartbeats."),
			 errhint("Fix the cause of the crashes (see the log), then restart the server; or set alive_worker.crash_limit to 0 or above %d and reload to retry now. The record is in \"%s\".",
					 recent_crashes, crash_guard_record_path())));
	pgstat_report_activity(STATE_IDLE, "disabled by crash guard");
	{
		char		detail[ERROR_MESSAGE_SIZE];

		snprintf(detail, sizeof(detail),
				 "the worker crashed %d times within alive_worker.crash_window (%d s); record in \"%s\"",
				 recent_crashes, crash_window_s, crash_guard_record_path());
		worker_status_set_state_detail(worker_index, WORKER_DISABLED, detail);
	}
	for (;;)
	{
		if (sleep_and_handle_signals(-1) && !crash_guard_still_disabled(crash_limit))
		{
			ereport(LOG,
					(errmsg("alive_worker crash guard lifted by alive_worker.crash_limit = %d",
							crash_limit)));
			pgstat_report_activity(STATE_IDLE, NULL);
			worker_status_set_state(worker_index, WORKER_STARTING);
			return;
		}
	}
}

/*
 * On a hot standby: writes nothing until recovery ends.  Its slot stays
 * "starting", which the status view shows on a standby as "waiting for
 * recovery to end".  No signal reaches a background worker at promotion: it
 * looks every RECOVERY_POLL_MS, a read of shared memory.  Returns whether it
 * waited (settings reloaded meanwhile are published after).
 */
bool
wait_for_recovery_to_end(void)
{
	if (!RecoveryInProgress())
		return false;
	ereport(LOG,
			(errmsg("alive_worker waiting for recovery to end: database \"%s\", no heartbeat before promotion",
					worker_database_name)));
	worker_status_set_state(worker_index, WORKER_STARTING);
	pgstat_report_activity(STATE_IDLE, "waiting for recovery to end");
	while (RecoveryInProgress())
		(void) sleep_and_handle_signals(RECOVERY_POLL_MS);
	server_start_promoted();
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

/* Ticks on the grid of deadlines until SIGTERM. */
void
run_schedule(void)
{
	int64		tick_deadline;	/* when the last tick was due */
	int64		deadline;		/* when the next tick is due */
	int64		skipped;
	int			settings_generation = 0;
	bool		previous_committed = false;
	int64		next_disk_read = 0;

	/*
	 * Tick once at start, then on a grid of absolute deadlines on the
	 * monotonic clock.  A latch wake-up (SIGHUP, a spurious one) only makes
	 * the loop look at the clock again, so it neither adds a tick nor shifts
	 * the grid, and the time a tick takes does not add up into drift.
	 */
	deadline = monotonic_us();
	tick_deadline = deadline;
	for (;;)
	{
		bool		reloaded;

		/* Back to back (benchmarks only), the deadline is always now. */
		if (back_to_back || monotonic_us() >= deadline)
			reloaded = worker_handle_signals();
		else
			reloaded = sleep_until(deadline);
		if (reloaded)
		{
			settings_generation++;
			worker_publish_settings();
			/* A new interval counts from the last tick, not the old deadline. */
			deadline = next_deadline(tick_deadline);
		}
		if (back_to_back)
			deadline = monotonic_us();
		else if (monotonic_us() < deadline)
			continue;

		tick_deadline = deadline;
		previous_committed = worker_run_tick(tick_deadline, settings_generation, previous_committed);
		if (previous_committed)
			ticks_written++;
		if (got_sigterm)
			worker_stop();
		/* Between ticks, with its own deadline within alive_worker.probe_timeout. */
		worker_probe_if_due();
		if (got_sigterm)
			worker_stop();
		/* At most once a second: at short intervals it would be most of a tick's cost. */
		if (monotonic_us() >= next_disk_read)
		{
			DiskSpace	space;

			disk_space_measure(&space);
			worker_status_disk(worker_index, space.free_bytes, space.size_bytes, space.where);
			next_disk_read = monotonic_us() + DISK_READ_PERIOD_US;
		}

		/* Next deadline on the grid; ticks more than an interval late are skipped. */
		deadline = next_deadline(tick_deadline);
		skipped = 0;
		if (!back_to_back)
		{
			int64		interval = (int64) tick_interval_ms * 1000;
			int64		late = monotonic_us() - deadline;

			if (late >= interval)
			{
				skipped = late / interval;
				ticks_skipped += skipped;
				deadline += skipped * interval;
			}
		}
		worker_status_schedule(worker_index,
							   GetCurrentTimestamp() + (deadline - monotonic_us()), skipped);
		/* Now, while idle, rather than at the start of the next tick. */
		tick_timeout_set(tick_must_end_at(deadline));
	}
}
