/*
 * _interrupts.c
 *		How SIGTERM, the tick timeout, a cancel request and postmaster death
 *		reach a hook's Python code while it runs, and the GIL for the bridge.
 *
 * PostgreSQL's signal handlers only set flags (QueryCancelPending, the
 * shim's got_sigterm), which PostgreSQL's own code reads at
 * CHECK_FOR_INTERRUPTS; Python never does.  This file makes the same flags
 * end a hook, without Python installing any signal handler of its own and
 * without touching PostgreSQL's handlers:
 *
 *  - A watchdog thread, started with every signal blocked at the first hook
 *    call, sleeps in poll() while no hook runs.  While one runs (armed), it
 *    looks every WATCH_INTERVAL_MS at the flags (through the shim's
 *    callback, which only reads them) and at the postmaster's death pipe.
 *
 *  - When it sees a cause, it sends the kick, a real-time signal nobody
 *    else uses, to the worker's thread alone (pthread_kill).  Its handler,
 *    kick_handler() below, calls PyErr_SetInterruptEx(kick), documented as
 *    async-signal-safe: that marks the signal number "tripped" in Python's
 *    own table of handlers and sets the interpreter's eval breaker.  It
 *    must run on the worker's thread: Python sets the eval breaker only when
 *    the thread that trips is its main thread, which is the worker's (the
 *    worker started the interpreter), and runs tripped entries there only.
 *    Python runs the entry's Python function
 *    (alive_worker._interrupts.interrupted) at its next bytecode boundary;
 *    it asks aw_interrupt_check() why and raises
 *    alive_worker.hooks.Interrupted in the hook.  Python only runs an entry
 *    that holds a Python function: it is set once with signal.signal(), and
 *    the kernel-level handler that call installs is at once replaced by
 *    kick_handler(), with the signal blocked in between, so that Python's
 *    own C handler never runs.
 *
 *  - A hook blocked in a system call (time.sleep, a socket read, waitpid)
 *    needs the call to return EINTR, after which Python's wrappers call
 *    PyErr_CheckSignals() and so run the tripped entry (PEP 475).
 *    PostgreSQL installs its handlers with SA_RESTART, which restarts
 *    read(), recv() and waitpid() after SIGTERM or SIGINT; kick_handler() is
 *    installed without SA_RESTART, so the kick interrupts them.  The kick is
 *    blocked on the worker's thread except while a hook's own Python runs
 *    (not inside a bridge call), so PostgreSQL code never sees an EINTR it
 *    does not expect; a kick sent meanwhile waits, and trips Python as soon
 *    as the bridge call returns.
 *
 *  - Until the hook ends, the watchdog trips the entry again every
 *    RETRIP_INTERVAL_MS: a hook that catches the exception and goes on gets
 *    it again, and once AW_INTERRUPT_GRACE_MS have passed since the cause was
 *    first seen, aw_interrupt_check() ends the worker through the shim (on
 *    the worker's thread, between two bytecodes: FATAL or proc_exit, never a
 *    crash).
 *
 * What this cannot reach: a hook stuck in C code that retries on EINTR or
 * never returns to the interpreter (a C extension's long computation), which
 * holds the worker's thread.  Nothing short of killing the process (which
 * PostgreSQL treats as a crash and answers with a reset) ends that.
 *
 * This file includes Python.h and not postgres.h; _bridge.c is the other way
 * round.  Both are compiled into the embedding library.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "_bridge.h"
#include "_interrupts.h"

#define WATCH_INTERVAL_MS 10
#define RETRIP_INTERVAL_MS 50

static pthread_t worker_thread;
static pthread_t watchdog;
static int	started = 0;
static int	wake_fd = -1;		/* eventfd: a hook began */
static int	postmaster_fd = -1;
static int	(*current_cause) (void);

/* Written by the worker's thread, read by the watchdog. */
static volatile sig_atomic_t armed = 0;
static int	arm_when_started = 0;	/* armed before the watchdog was started */

/* Written by the watchdog while armed, cleared by the worker at arm time. */
static volatile sig_atomic_t latched_cause = AW_CAUSE_NONE;
static volatile int64_t latched_at_us = 0;
static volatile sig_atomic_t postmaster_dead = 0;

static int64_t
monotonic_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

int
aw_interrupt_signal(void)
{
	/* SIGRTMIN is the tick timeout's (tick_timeout.c). */
	return SIGRTMIN + 1;
}

/* On the worker's thread: trips Python's entry, and interrupts the system call. */
static void
kick_handler(int signo)
{
	int			save_errno = errno;

	PyErr_SetInterruptEx(signo);
	errno = save_errno;
}

static void
set_kick_blocked(int block)
{
	sigset_t	kick;

	sigemptyset(&kick);
	sigaddset(&kick, aw_interrupt_signal());
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &kick, NULL);
}

static void
interrupt_python(void)
{
	pthread_kill(worker_thread, aw_interrupt_signal());
}

static void *
watch(void *unused)
{
	int64_t		last_trip_us = 0;

	for (;;)
	{
		struct pollfd fds[2];
		int			nfds = 0;
		int			cause = AW_CAUSE_NONE;

		fds[nfds].fd = wake_fd;
		fds[nfds++].events = POLLIN;
		if (!postmaster_dead && postmaster_fd >= 0)
		{
			fds[nfds].fd = postmaster_fd;
			fds[nfds++].events = POLLIN;
		}
		if (poll(fds, nfds, armed ? WATCH_INTERVAL_MS : -1) > 0)
		{
			uint64_t	count;

			/* Only drains the eventfd: what it counted does not matter. */
			if ((fds[0].revents & POLLIN) &&
				read(wake_fd, &count, sizeof(count)) != sizeof(count))
				count = 0;
			/* The death pipe gets readable (EOF) when the postmaster exits. */
			if (nfds > 1 && fds[1].revents != 0)
				postmaster_dead = 1;
		}
		if (!armed)
			continue;

		if (postmaster_dead)
			cause = AW_CAUSE_POSTMASTER_DEATH;
		else if (current_cause != NULL)
			cause = current_cause();
		if (cause == AW_CAUSE_NONE && latched_cause == AW_CAUSE_NONE)
			continue;
		if (latched_cause == AW_CAUSE_NONE)
		{
			latched_at_us = monotonic_us();
			latched_cause = cause;
			last_trip_us = 0;
		}
		if (monotonic_us() - last_trip_us >= RETRIP_INTERVAL_MS * 1000)
		{
			interrupt_python();
			last_trip_us = monotonic_us();
		}
	}
	return NULL;
}

int
aw_interrupts_start(int postmaster_death_fd, int (*cause) (void))
{
	sigset_t	all;
	sigset_t	previous;
	struct sigaction action;
	int			failed;

	if (started)
		return 0;
	worker_thread = pthread_self();
	postmaster_fd = postmaster_death_fd;
	current_cause = cause;
	wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (wake_fd < 0)
		return errno;

	/*
	 * The Python side has set Python's entry for the kick and left the kick
	 * blocked; replace Python's C handler with ours before unblocking it.
	 */
	memset(&action, 0, sizeof(action));
	action.sa_handler = kick_handler;
	sigemptyset(&action.sa_mask);
	action.sa_flags = 0;		/* no SA_RESTART: that is the point */
	if (sigaction(aw_interrupt_signal(), &action, NULL) != 0)
		return errno;

	/* The watchdog inherits a mask that blocks every signal. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &previous);
	failed = pthread_create(&watchdog, NULL, watch, NULL);
	pthread_sigmask(SIG_SETMASK, &previous, NULL);
	if (failed != 0)
		return failed;
	/* Blocked on the worker's thread except while a hook's Python runs. */
	set_kick_blocked(1);
	started = 1;
	if (arm_when_started)
		aw_interrupts_arm();
	return 0;
}

void
aw_interrupts_arm(void)
{
	uint64_t	one = 1;

	if (!started)
	{
		/* The first hook call starts the watchdog: arm it then. */
		arm_when_started = 1;
		return;
	}
	latched_cause = AW_CAUSE_NONE;
	latched_at_us = 0;
	armed = 1;
	/* An eventfd's write fails only on overflow, when the watchdog is awake. */
	if (write(wake_fd, &one, sizeof(one)) != sizeof(one))
		latched_at_us = 0;
	set_kick_blocked(0);
}

int
aw_interrupts_disarm(void)
{
	int			cause;

	arm_when_started = 0;
	if (!started)
		return AW_CAUSE_NONE;
	set_kick_blocked(1);
	armed = 0;
	cause = latched_cause;
	latched_cause = AW_CAUSE_NONE;
	return cause;
}

void
aw_interrupts_enter_postgres(void)
{
	if (armed)
		set_kick_blocked(1);
}

void
aw_interrupts_leave_postgres(void)
{
	if (armed)
		set_kick_blocked(0);
}

int
aw_interrupts_latched(int64_t *since_us)
{
	if (!armed)
		return AW_CAUSE_NONE;
	if (since_us != NULL)
		*since_us = monotonic_us() - latched_at_us;
	return latched_cause;
}

/*
 * PostgreSQL code reached from Python (a statement through the bridge) runs
 * with the GIL held, as PL/Python expects when such a statement calls a
 * plpython3u function or fires its trigger: PL/Python never takes the GIL,
 * it assumes its caller has it.  cffi releases the GIL around every call
 * into the bridge; this takes it back for the PostgreSQL part.  A hook's
 * threads so wait while a statement runs.
 */
int
aw_gil_take(void)
{
	return (int) PyGILState_Ensure();
}

void
aw_gil_give(int state)
{
	PyGILState_Release((PyGILState_STATE) state);
}
