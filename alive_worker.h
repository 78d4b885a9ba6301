/*
 * alive_worker.h
 *		What the shim's other modules need of alive_worker.c.
 */
#ifndef ALIVE_WORKER_H
#define ALIVE_WORKER_H

#include "postmaster/bgworker.h"

/* Fills in the registration of the worker for configured database index. */
extern void alive_worker_describe(BackgroundWorker *worker, int index);

#endif							/* ALIVE_WORKER_H */
