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

static void *
find_entry_point(void *library, const char *name)
{
	void	   *entry = dlsym(library, name);

	if (entry == NULL)
		ereport(FATAL,
				(errmsg("alive_worker library \"%s\" has no entry point \"%s\"",
						ALIVE_WORKER_PYTHON_LIBRARY, name),
				 errhint("Reinstall alive_worker: its package, or make install from the source it was built from.")));
	return entry;
}

/*
 * Loads the embedding library and starts Python now, outside any
 * transaction, so that a broken installation ends in one clear FATAL line
 * rather than in silent failures at every tick.
 */
void
start_python(const aw_settings *settings, const aw_worker_flags *flags)
{
	void	   *library;
	int			result;

	prepare_python_environment();

	/* RTLD_GLOBAL: extension modules such as _cffi_backend need libpython's symbols. */
	library = dlopen(ALIVE_WORKER_PYTHON_LIBRARY, RTLD_NOW | RTLD_GLOBAL);
	if (library == NULL)
		ereport(FATAL,
				(errmsg("alive_worker could not load its Python library \"%s\": %s",
						ALIVE_WORKER_PYTHON_LIBRARY, dlerror()),
				 errhint("Reinstall alive_worker: its package, or make install as the user who built it.")));

	embedded_python.start = find_entry_point(library, "aw_python_start");
	embedded_python.tick = find_entry_point(library, "aw_python_tick");
	embedded_python.hook = find_entry_point(library, "aw_python_hook");
	embedded_python.bridge_start = find_entry_point(library, "aw_bridge_start");
	embedded_python.finish_call = find_entry_point(library, "aw_finish_python_call");
	embedded_python.hook_end = find_entry_point(library, "aw_hook_end");

	/*
	 * cffi answers 0 from every entry point when the interpreter or the
	 * package failed to start (its own message goes to stderr, which is the
	 * server log); AW_OK is never 0.
	 */
	result = embedded_python.start(settings);
	if (result == AW_ERROR)
		embedded_python.finish_call(result, FATAL);
	if (result != AW_OK)
		ereport(FATAL,
				(errmsg("alive_worker could not start Python from \"%s\"",
						ALIVE_WORKER_PYTHON_EXECUTABLE),
				 errdetail("The library \"%s\" failed to initialise; Python's own message precedes this line.",
						   ALIVE_WORKER_PYTHON_LIBRARY),
				 errhint("Check that the server's OS user can read the virtual environment, or reinstall alive_worker (its package, or make install).")));
	embedded_python.bridge_start(flags);
}
