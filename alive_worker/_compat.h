/*
 * _compat.h
 *		Everything that differs between the PostgreSQL majors alive_worker
 *		supports (15, 16, 17 and 18), in one place, keyed on PG_VERSION_NUM.
 *
 * Included right after postgres.h by the C shim (alive_worker.c) and by the
 * SPI bridge (_bridge.c).  Each entry names the major that brought the
 * change, so that it can go once that major is the oldest one supported.
 * Where a newer major offers a better API, it is used there, and the older
 * majors keep what they have.
 */
#ifndef ALIVE_WORKER_COMPAT_H
#define ALIVE_WORKER_COMPAT_H

#include "fmgr.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000
#error "alive_worker needs PostgreSQL 15 or later"
#endif

/* PostgreSQL 16 declares _PG_init in fmgr.h; before, each module did. */
#if PG_VERSION_NUM < 160000
extern PGDLLEXPORT void _PG_init(void);
#endif

/*
 * PostgreSQL 18 lets a module record its name and version in its magic
 * block, shown by pg_get_loaded_modules().  Expects ALIVE_WORKER_VERSION.
 */
#if PG_VERSION_NUM >= 180000
#define ALIVE_WORKER_MODULE_MAGIC \
	PG_MODULE_MAGIC_EXT(.name = "alive_worker", .version = ALIVE_WORKER_VERSION)
#else
#define ALIVE_WORKER_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/*
 * The wait event the worker reports while it sleeps between ticks.
 * PostgreSQL 17 lets an extension name its own, so pg_stat_activity shows
 * wait_event "AliveWorkerMain" instead of the generic "Extension" that older
 * majors show.  The name is registered in shared memory, once per cluster:
 * later calls with the same name return the same event, so a restarted
 * worker reuses it.
 */
#define ALIVE_WORKER_WAIT_EVENT_NAME "AliveWorkerMain"

static inline uint32
alive_worker_main_wait_event(void)
{
#if PG_VERSION_NUM >= 170000
	return WaitEventExtensionNew(ALIVE_WORKER_WAIT_EVENT_NAME);
#else
	return PG_WAIT_EXTENSION;
#endif
}

/*
 * PostgreSQL 17 ties a wait event set to a resource owner instead of a
 * memory context; the worker's set lives as long as the process, so it has
 * neither owner nor a context but the top one.
 */
static inline WaitEventSet *
alive_worker_create_wait_event_set(int nevents)
{
#if PG_VERSION_NUM >= 170000
	return CreateWaitEventSet(NULL, nevents);
#else
	return CreateWaitEventSet(TopMemoryContext, nevents);
#endif
}


/*
 * The background workers the postmaster has registered, counted, and whether
 * one of alive_worker's for configured database index is among them: a
 * registration refused for want of a slot (max_worker_processes) is only
 * logged.  PostgreSQL 18 keeps the list doubly linked.  Postmaster only.
 */
#include "postmaster/bgworker_internals.h"

static inline int
alive_worker_registered_workers(int index, bool *found)
{
	int			count = 0;
#if PG_VERSION_NUM >= 180000
	dlist_iter	iter;

	dlist_foreach(iter, &BackgroundWorkerList)
	{
		RegisteredBgWorker *rw = dlist_container(RegisteredBgWorker, rw_lnode, iter.cur);
#else
	slist_iter	iter;

	slist_foreach(iter, &BackgroundWorkerList)
	{
		RegisteredBgWorker *rw = slist_container(RegisteredBgWorker, rw_lnode, iter.cur);
#endif

		count++;
		if (strcmp(rw->rw_worker.bgw_library_name, "alive_worker") == 0 &&
			strcmp(rw->rw_worker.bgw_function_name, "alive_worker_main") == 0 &&
			DatumGetInt32(rw->rw_worker.bgw_main_arg) == index)
			*found = true;
	}
	return count;
}

#endif							/* ALIVE_WORKER_COMPAT_H */
