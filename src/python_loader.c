/*
 * python_loader.c
 *		Loading the cffi embedding library, and Python with it, in the
 *		worker only.
 *
 * The postmaster and client backends load alive_worker.so, which never
 * links libpython: only a worker, once forked, dlopens the embedding library
 * (which does) and finds its entry points by name.
 */
#include "postgres.h"

#include <dlfcn.h>
#include <stdlib.h>

#include "nodes/pg_list.h"

#include "alive_worker_config.h"	/* written by make: where Python lives */
#include "python_loader.h"

EmbeddedPython embedded_python;

/*
 * The embedded interpreter finds its environment from the process
 * environment before any Python runs.  Point it at the virtual environment
 * chosen at install time, and drop what the postmaster inherited: variables
 * such as PYTHONFAULTHANDLER would make Python replace PostgreSQL's signal
 * handlers, and PYTHONPATH or PYTHONHOME would pick another installation.
 */
static void
prepare_python_environment(void)
{
	extern char **environ;
	List	   *inherited = NIL;
	ListCell   *cell;

	/* Collect first: unsetenv() rewrites environ. */
	for (char **entry = environ; *entry != NULL; entry++)
	{
		if (strncmp(*entry, "PYTHON", 6) == 0)
			inherited = lappend(inherited, pnstrdup(*entry, strcspn(*entry, "=")));
	}
	foreach(cell, inherited)
		unsetenv((const char *) lfirst(cell));

	setenv("PYTHONEXECUTABLE", ALIVE_WORKER_PYTHON_EXECUTABLE, 1);
	setenv("PYTHONNOUSERSITE", "1", 1);
	setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
}

/* The entry point name of library, or NULL with failure filled in. */
static void *
find_entry_point(void *library, const char *name, WorkerFailure *failure)
{
	void	   *entry = dlsym(library, name);

	if (entry == NULL && failure->message[0] == '\0')
	{
		snprintf(failure->message, sizeof(failure->message),
				 "alive_worker library \"%s\" has no entry point \"%s\"",
				 ALIVE_WORKER_PYTHON_LIBRARY, name);
		strlcpy(failure->hint,
				"Reinstall alive_worker: its package, or make install from the source it was built from.",
				sizeof(failure->hint));
	}
	return entry;
}

/*
 * Loads the embedding library and starts Python now, outside any
 * transaction, so that a broken installation ends in one clear FATAL line
 * rather than in silent failures at every tick.  Returns false, with
 * failure filled in, for the shim to report and exit.
 */
bool
start_python(const aw_settings *settings, const aw_worker_flags *flags, WorkerFailure *failure)
{
	void	   *library;
	int			result;

	memset(failure, 0, sizeof(*failure));
	prepare_python_environment();

	/* RTLD_GLOBAL: extension modules such as _cffi_backend need libpython's symbols. */
	library = dlopen(ALIVE_WORKER_PYTHON_LIBRARY, RTLD_NOW | RTLD_GLOBAL);
	if (library == NULL)
	{
		snprintf(failure->message, sizeof(failure->message),
				 "alive_worker could not load its Python library \"%s\": %s",
				 ALIVE_WORKER_PYTHON_LIBRARY, dlerror());
		strlcpy(failure->hint,
				"Reinstall alive_worker: its package, or make install as the user who built it.",
				sizeof(failure->hint));
		return false;
	}

	embedded_python.start = find_entry_point(library, "aw_python_start", failure);
	embedded_python.tick = find_entry_point(library, "aw_python_tick", failure);
	embedded_python.hook = find_entry_point(library, "aw_python_hook", failure);
	embedded_python.bridge_start = find_entry_point(library, "aw_bridge_start", failure);
	embedded_python.finish_call = find_entry_point(library, "aw_finish_python_call", failure);
	embedded_python.hook_end = find_entry_point(library, "aw_hook_end", failure);
	/* The first one missing is named, as when each was a FATAL of its own. */
	if (failure->message[0] != '\0')
		return false;

	/*
	 * cffi answers 0 from every entry point when the interpreter or the
	 * package failed to start (its own message goes to stderr, which is the
	 * server log); AW_OK is never 0.
	 */
	result = embedded_python.start(settings);
	if (result != AW_OK)
	{
		failure->python_error = result == AW_ERROR;
		snprintf(failure->message, sizeof(failure->message),
				 "alive_worker could not start Python from \"%s\"",
				 ALIVE_WORKER_PYTHON_EXECUTABLE);
		snprintf(failure->detail, sizeof(failure->detail),
				 "The library \"%s\" failed to initialise; Python's own message precedes this line.",
				 ALIVE_WORKER_PYTHON_LIBRARY);
		strlcpy(failure->hint,
				"Check that the server's OS user can read the virtual environment, or reinstall alive_worker (its package, or make install).",
				sizeof(failure->hint));
		return false;
	}
	embedded_python.bridge_start(flags);
	return true;
}
