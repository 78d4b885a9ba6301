/*
 * python_loader.h
 *		The embedding library's entry points (python_loader.c).
 */
#ifndef ALIVE_WORKER_PYTHON_LOADER_H
#define ALIVE_WORKER_PYTHON_LOADER_H

#include "alive_worker/_bridge.h"
#include "worker_failure.h"

/*
 * The one table of the shim's calls into the embedding library, found with
 * dlsym: Python's entry points (EMBEDDING in alive_worker/_bridge.h) and
 * the bridge's for the shim (SHIM CALLS).
 */
typedef struct EmbeddedPython
{
	int			(*start) (const aw_settings *settings);
	int			(*tick) (aw_tick *tick);
	int			(*hook) (void);
	void		(*bridge_start) (const aw_worker_flags *flags);
	/* Raises, at elevel, the error Python left, if result says there is one. */
	void		(*finish_call) (int result, int elevel);
	int			(*hook_end) (void);
} EmbeddedPython;

extern EmbeddedPython embedded_python;

/*
 * Loads the embedding library and starts Python with the settings, outside
 * any transaction, then gives the bridge the worker's flags.  Returns false,
 * with the reason in failure, if either fails: the shim reports it and exits.
 */
extern bool start_python(const aw_settings *settings, const aw_worker_flags *flags,
						 WorkerFailure *failure);

#endif							/* ALIVE_WORKER_PYTHON_LOADER_H */
