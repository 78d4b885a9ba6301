/*
 * tick_timeout.c
 *		The bound on how long a tick may run, on a timer of its own.
 *
 * PostgreSQL's statement_timeout (timeout.c) would do, but it leaves its
 * SIGALRM armed when the timeout is disabled, to save a setitimer() per
 * statement.  For a worker that sets one timeout per tick, that is a signal
 * at every tick: a second wake-up, a kill() for the latch and a setitimer()
 * to re-arm, which cost more than the tick's Python.  A POSIX timer of our
 * own only ever fires when a tick really runs late.  It cancels the tick the
 * way a statement timeout does: QueryCancelPending, acted on at the next
 * CHECK_FOR_INTERRUPTS.
 *
 * The timer for the next tick is set while the worker is idle, as soon as
 * the next deadline is known, and left set when the tick ends: a timer that
 * expires between ticks cancels nothing.  So the usual tick costs one
 * timer_settime, made after its commit.
 *
 * Linux only, like the rest of the worker's timing (timerfd): the timer
 * signals the worker's own thread, so a thread that a Python hook starts
 * never takes the signal.
 */
#include "postgres.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/elog.h"

#include "schedule.h"
#include "tick_timeout.h"

/* PostgreSQL's own words for statement_timeout. */
#define TIMEOUT_MESSAGE "canceling statement due to statement timeout"

static timer_t timeout_timer;

/* When the timer expires, on the monotonic clock (microseconds). */
static int64 timer_set_for = 0;

/* Between tick_timeout_begin and _end: the only span in which expiry cancels. */
static volatile sig_atomic_t expiry_cancels_tick = false;
/* Set by the signal handler when it cancelled the tick in flight. */
static volatile sig_atomic_t fired = false;

static void
handle_tick_timeout(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (expiry_cancels_tick)
	{
		fired = true;
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);

	errno = save_errno;
}

bool
tick_timeout_init(void)
{
	struct sigevent event;

	memset(&event, 0, sizeof(event));
	event.sigev_notify = SIGEV_THREAD_ID;
	event.sigev_signo = SIGRTMIN;
	event._sigev_un._tid = gettid();
	pqsignal(SIGRTMIN, handle_tick_timeout);
	return timer_create(CLOCK_MONOTONIC, &event, &timeout_timer) == 0;
}

bool
tick_timeout_set(int64 end_us)
{
	struct itimerspec at;

	if (end_us == timer_set_for)
		return true;
	at = schedule_timer_spec(end_us, 0);
	if (timer_settime(timeout_timer, TIMER_ABSTIME, &at, NULL) != 0)
		return false;
	timer_set_for = end_us;
	return true;
}

bool
tick_timeout_begin(int64 end_us)
{
	/* Set first: an earlier expiry must not cancel this tick. */
	if (!tick_timeout_set(end_us))
		return false;
	fired = false;
	expiry_cancels_tick = true;
	return true;
}

void
tick_timeout_end(void)
{
	expiry_cancels_tick = false;
}

bool
tick_timeout_fired(void)
{
	return fired;
}

const volatile sig_atomic_t *
tick_timeout_fired_flag(void)
{
	return &fired;
}

void
tick_timeout_explain_current_error(int timeout_ms)
{
	MemoryContext context = CurrentMemoryContext;
	ErrorData  *original;
	bool		keep_message;

	if (!fired || geterrcode() != ERRCODE_QUERY_CANCELED)
		return;
	fired = false;

	/*
	 * A message that says this already and more (what became of the hook
	 * host, alive_worker/_hook_client.py) is kept.
	 */
	original = CopyErrorData();
	keep_message = original->message != NULL &&
		strncmp(original->message, TIMEOUT_MESSAGE, strlen(TIMEOUT_MESSAGE)) == 0;

	/*
	 * ereport is the only way to make an error current: raise the new one
	 * and catch it, so that it is the one the caller reports.
	 */
	FlushErrorState();
	PG_TRY();
	{
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 keep_message ? errmsg_internal("%s", original->message) : errmsg(TIMEOUT_MESSAGE),
				 errdetail("A tick may run until alive_worker.tick_timeout (%d ms) after it was due.",
						   timeout_ms)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
	}
	PG_END_TRY();
	FreeErrorData(original);
}
