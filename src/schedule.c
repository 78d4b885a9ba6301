/*
 * schedule.c
 *		When the worker ticks: the grid of deadlines, and the sleeps until
 *		them.  A leaf: it computes and sleeps, and returns; acting on
 *		signals, publishing status and stopping are the shim's.
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

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

#include "schedule.h"

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

/*
 * When the tick due at tick_deadline must be done, on the monotonic clock:
 * the timeout after its deadline, so that a late tick does not run into
 * the next, but at least half of it after it began.
 */
int64
tick_must_end_at(int64 tick_deadline, int timeout_ms)
{
	return tick_end_deadline(tick_deadline, timeout_ms, monotonic_us());
}

/* The same, at now: pure, for the unit tests (tests/unit/test_c_schedule.py). */
int64
tick_end_deadline(int64 tick_deadline, int timeout_ms, int64 now)
{
	int64		timeout = (int64) timeout_ms * 1000;

	return Max(tick_deadline + timeout, now + timeout / 2);
}

/* Until the latch is set or timeout_ms passes (-1: no timeout). */
SleepOutcome
schedule_sleep_ms(long timeout_ms)
{
	int			events;

	events = WaitLatch(MyLatch,
					   WL_LATCH_SET | WL_POSTMASTER_DEATH |
					   (timeout_ms >= 0 ? WL_TIMEOUT : 0),
					   timeout_ms, sleep_wait_event);
	ResetLatch(MyLatch);
	return (events & WL_POSTMASTER_DEATH) ? POSTMASTER_DIED : SLEPT;
}

/*
 * The wait between ticks: the latch, postmaster death, and a timerfd armed
 * at the deadline.  WaitLatch takes whole milliseconds, and the kernel adds
 * slack to such timeouts (0.1% of the timeout, 10 ms at 10 s), so a
 * deadline kept in microseconds would be missed by up to a millisecond and
 * more; an absolute timer on the monotonic clock wakes the worker at the
 * deadline itself.
 */
bool
schedule_init(void)
{
	/* Needs shared memory, so here rather than in _PG_init. */
	sleep_wait_event = alive_worker_main_wait_event();
	deadline_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (deadline_timer < 0)
		return false;
	tick_wait_set = alive_worker_create_wait_event_set(3);
	AddWaitEventToSet(tick_wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(tick_wait_set, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(tick_wait_set, WL_SOCKET_READABLE, deadline_timer, NULL, NULL);
	return true;
}

/*
 * Sleeps until the monotonic clock reaches deadline (in microseconds) or the
 * latch is set.
 *
 * The timer repeats every interval, so on the usual path, where the next
 * deadline is the last plus the interval, it need not be set again; any
 * other deadline (a late tick, a skip, a reload, clock alignment) sets it.
 */
SleepOutcome
schedule_sleep_until(int64 deadline, int interval_ms)
{
	static int64 timer_next = -1;	/* when the timer expires next */
	static int64 timer_period = 0;
	int64		period = (int64) interval_ms * 1000;
	WaitEvent	event;

	if (deadline != timer_next || period != timer_period)
	{
		struct itimerspec at = schedule_timer_spec(deadline, period);

		if (timerfd_settime(deadline_timer, TFD_TIMER_ABSTIME, &at, NULL) != 0)
			return TIMER_FAILED;
		timer_next = deadline;
		timer_period = period;
	}

	if (WaitEventSetWait(tick_wait_set, -1, &event, 1, sleep_wait_event) == 1)
	{
		if (event.events & WL_POSTMASTER_DEATH)
			return POSTMASTER_DIED;
		if (event.events & WL_SOCKET_READABLE)
		{
			uint64		expirations;

			/* Drain the timer, which would stay readable otherwise. */
			if (read(deadline_timer, &expirations, sizeof(expirations)) == sizeof(expirations))
				timer_next += (int64) expirations * period;
			else if (errno != EAGAIN)
				elog(DEBUG1, "alive_worker could not read its tick timer: %m");
		}
	}
	ResetLatch(MyLatch);
	return SLEPT;
}

/*
 * The deadline of the tick after the one due at tick_deadline: one interval
 * later, or, with alive_worker.clock_aligned, the next wall-clock multiple of
 * the interval at least half an interval later (the first tick, at start,
 * is off the grid; on it, that is one interval later).  Kept on the
 * monotonic clock: only the grid's phase comes from the wall clock, read
 * here.
 */
int64
schedule_next_deadline(int64 tick_deadline, int interval_ms, bool clock_aligned)
{
	int64		wall_offset = 0;

	if (clock_aligned)
		wall_offset = clock_us(CLOCK_REALTIME) - monotonic_us();
	return schedule_next_deadline_at(tick_deadline, interval_ms, clock_aligned, wall_offset);
}

/*
 * The same, given wall_offset, the wall clock's reading minus the monotonic
 * clock's (microseconds): pure, for the unit tests.  A jump of the wall
 * clock changes wall_offset, so it moves the aligned grid's phase, never the
 * gap between two ticks beyond half to one and a half intervals.
 */
int64
schedule_next_deadline_at(int64 tick_deadline, int interval_ms, bool clock_aligned,
						  int64 wall_offset)
{
	int64		interval = (int64) interval_ms * 1000;
	int64		wall;

	if (!clock_aligned)
		return tick_deadline + interval;
	/* The wall-clock time of tick_deadline + interval / 2. */
	wall = wall_offset + tick_deadline + interval / 2;
	return tick_deadline + interval / 2 + (interval - wall % interval);
}

/* Ticks more than an interval late are skipped: how many, at now. */
int64
schedule_ticks_late(int64 deadline, int64 now, int interval_ms)
{
	int64		interval = (int64) interval_ms * 1000;
	int64		late = now - deadline;

	return late >= interval ? late / interval : 0;
}

/*
 * The deadline to wait for at now, for the tick due at deadline: itself, or,
 * more than an interval late, the last deadline of its grid not after now,
 * so that the worker ticks at once but never twice to catch up.  Adds the
 * ticks passed over to *skipped.
 */
int64
schedule_skip_late_ticks(int64 deadline, int64 now, int interval_ms, int64 *skipped)
{
	int64		late_ticks = schedule_ticks_late(deadline, now, interval_ms);

	*skipped += late_ticks;
	return deadline + late_ticks * interval_ms * 1000;
}
