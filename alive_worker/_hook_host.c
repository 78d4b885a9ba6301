/*
 * _hook_host.c
 *		Ending everything the hook host leaves behind.
 *
 * The hook host (alive_worker/_host.py) runs in a session and process group
 * of its own, which the worker kills when it ends the host.  But a hook may
 * fork a child that calls setsid() or setpgid() and then forks again: a
 * daemon that no kill of the host's group reaches and whose parent is gone.
 * Its ancestry is all that ties it to the host, so the worker keeps it:
 *
 *  - once it starts a host, the worker is a child subreaper
 *    (PR_SET_CHILD_SUBREAPER): a process of the host's tree whose parent
 *    ends is re-parented to the worker, not to init;
 *  - so every process the hook started is a descendant of the worker, and
 *    the worker has no other children: aw_hook_host_end_descendants()
 *    SIGKILLs every descendant, found by their parent PIDs in /proc, in
 *    rounds until none is left (one forked meanwhile is re-parented to the
 *    worker and found in the next round), and reaps its own children;
 *  - the worker does that after it ends a host, and when it exits
 *    (on_proc_exit, on SIGTERM between ticks, a FATAL, postmaster death):
 *    the host's parent-death signal kills the host alone.
 *
 * A crash of the worker itself (a signal) leaves daemons to init, as any
 * crashed process does; the postmaster resets the cluster then anyway.
 *
 * Compiled into the cffi embedding library with the bridge: postgres.h
 * first, no Python header.
 */
#include "postgres.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/ipc.h"

#include "_bridge.h"

/* How long the worker goes on killing descendants that keep appearing. */
#define END_ROUNDS 1000
#define ROUND_PAUSE_US 1000

static bool adopted = false;

typedef struct Process
{
	pid_t		pid;
	pid_t		parent;
	bool		zombie;
	bool		descendant;
} Process;

/*
 * Every process in /proc with its parent, in a malloc'd array (*count of
 * them); NULL if /proc cannot be read.  malloc, not palloc: called in
 * proc_exit too, and from Python in a tick that may be failing.
 */
static Process *
list_processes(int *count)
{
	DIR		   *proc = opendir("/proc");
	struct dirent *entry;
	Process    *processes = NULL;
	int			size = 0;

	*count = 0;
	if (proc == NULL)
		return NULL;
	while ((entry = readdir(proc)) != NULL)
	{
		char		path[64];
		char		line[512];
		FILE	   *file;
		char	   *after_name;
		char		state;
		int			parent;
		char	   *end;
		long		pid = strtol(entry->d_name, &end, 10);

		if (*end != '\0' || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		file = fopen(path, "r");
		if (file == NULL)
			continue;			/* gone meanwhile */
		if (fgets(line, sizeof(line), file) == NULL)
		{
			fclose(file);
			continue;
		}
		fclose(file);
		/* "pid (name) state ppid ...": the name may hold spaces and parentheses. */
		after_name = strrchr(line, ')');
		if (after_name == NULL || sscanf(after_name + 1, " %c %d", &state, &parent) != 2)
			continue;
		if (*count == size)
		{
			Process    *grown;

			size = size == 0 ? 256 : size * 2;
			grown = realloc(processes, size * sizeof(Process));
			if (grown == NULL)
				break;
			processes = grown;
		}
		processes[*count].pid = (pid_t) pid;
		processes[*count].parent = (pid_t) parent;
		processes[*count].zombie = state == 'Z';
		processes[*count].descendant = false;
		(*count)++;
	}
	closedir(proc);
	return processes;
}

/* Marks the descendants of this process; returns how many are not zombies. */
static int
mark_descendants(Process *processes, int count)
{
	pid_t		me = getpid();
	bool		changed = true;
	int			living = 0;

	while (changed)
	{
		changed = false;
		for (int i = 0; i < count; i++)
		{
			if (processes[i].descendant)
				continue;
			if (processes[i].parent == me)
				processes[i].descendant = true;
			else
			{
				for (int j = 0; j < count; j++)
				{
					if (processes[j].descendant && processes[j].pid == processes[i].parent)
					{
						processes[i].descendant = true;
						break;
					}
				}
			}
			if (processes[i].descendant)
			{
				changed = true;
				if (!processes[i].zombie)
					living++;
			}
		}
	}
	return living;
}

static void
reap_children(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int
aw_hook_host_end_descendants(void)
{
	int			killed = 0;

	for (int round = 0; round < END_ROUNDS; round++)
	{
		int			count;
		Process    *processes = list_processes(&count);
		int			living;

		if (processes == NULL)
			return -1;
		living = mark_descendants(processes, count);
		for (int i = 0; i < count; i++)
		{
			if (processes[i].descendant && !processes[i].zombie &&
				kill(processes[i].pid, SIGKILL) == 0)
				killed++;
		}
		free(processes);
		reap_children();
		if (living == 0)
			return killed;
		pg_usleep(round == 0 ? 0 : ROUND_PAUSE_US);
	}
	return -1;
}

static void
end_descendants_at_exit(int code, Datum arg)
{
	(void) aw_hook_host_end_descendants();
}

int
aw_hook_host_adopt(void)
{
	if (adopted)
		return 0;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
		return -1;
	on_proc_exit(end_descendants_at_exit, (Datum) 0);
	adopted = true;
	return 0;
}
