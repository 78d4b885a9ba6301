/*
 * worker_failure.h
 *		Why the worker cannot go on: what a leaf returns, and the shim alone
 *		reports, at FATAL, in its one exit for failures (alive_worker.c,
 *		worker_exit_fatal).
 */
#ifndef ALIVE_WORKER_WORKER_FAILURE_H
#define ALIVE_WORKER_WORKER_FAILURE_H

#define WORKER_FAILURE_TEXT_SIZE 1024

typedef struct WorkerFailure
{
	/* Python recorded why it failed, with the bridge: report that first. */
	bool		python_error;
	char		message[WORKER_FAILURE_TEXT_SIZE];
	char		detail[WORKER_FAILURE_TEXT_SIZE];	/* empty: none */
	char		hint[WORKER_FAILURE_TEXT_SIZE];	/* empty: none */
} WorkerFailure;

#endif							/* ALIVE_WORKER_WORKER_FAILURE_H */
