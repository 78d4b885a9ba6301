/*
 * _gil.c
 *		The GIL for the bridge's PostgreSQL code.
 *
 * PostgreSQL code reached from Python (a statement through the bridge) runs
 * with the GIL held, as PL/Python expects when such a statement calls a
 * plpython3u function or fires its trigger: PL/Python never takes the GIL,
 * it assumes its caller has it.  cffi releases the GIL around every call
 * into the bridge; this takes it back for the PostgreSQL part.
 *
 * This file held the in-process watchdog that raised
 * alive_worker.hooks.Interrupted in a running hook (a thread and a real-time
 * signal) until hooks moved to the hook host (issue 20): the worker now ends
 * the host instead, and the watchdog went.
 *
 * This file includes Python.h and not postgres.h; _bridge.c is the other way
 * round.  Both are compiled into the embedding library.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_gil.h"

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
