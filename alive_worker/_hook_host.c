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
 *    SIGKILLs every descendant, found through the kernel's lists of each
 *    task's children (or, without them, every process's parent in /proc),
 *    in rounds until none is left (one forked meanwhile is re-parented to
 *    the worker and found in the next round), and reaps its own children;
 *  - the worker does that after it ends a host, and when it exits
 *    (on_proc_exit, on SIGTERM between ticks, a FATAL, postmaster death):
 *    the host's parent-death signal kills the host alone.
 *
 * An exit without exit callbacks (SIGQUIT: an immediate shutdown or a crash
 * reset; a crash of the worker itself) leaves such daemons to init, as any
 * process that dies so does; the host itself still dies with the worker.
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
/* Whether the kernel lists each task's children (/proc/PID/task/TID/children). */
static bool children_files = false;

/* A growing list of PIDs, malloc'd: used in proc_exit too, and in a failing tick. */
typedef struct PidList
{
	pid_t	   *pids;
	int			count;
	int			size;
} PidList;

static bool
append_pid(PidList *list, pid_t pid)
{
	if (list->count == list->size)
	{
		int			size = list->size == 0 ? 64 : list->size * 2;
		pid_t	   *grown = realloc(list->pids, size * sizeof(pid_t));

		if (grown == NULL)
			return false;
		list->pids = grown;
		list->size = size;
	}
	list->pids[list->count++] = pid;
	return true;
}

/* Appends the children of every thread of pid: the kernel's own list. */
static void
append_children(PidList *list, pid_t pid)
{
	char		path[64];
	DIR		   *tasks;
	struct dirent *task;

	snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
	tasks = opendir(path);
	if (tasks == NULL)
		return;					/* gone meanwhile */
	while ((task = readdir(tasks)) != NULL)
	{
		char		file[128];
		FILE	   *children;
		long		child;

		if (task->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "/proc/%d/task/%s/children", (int) pid, task->d_name);
		children = fopen(file, "r");
		if (children == NULL)
			continue;
		while (fscanf(children, "%ld", &child) == 1)
			if (!append_pid(list, (pid_t) child))
				break;
		fclose(children);
	}
	closedir(tasks);
}

/*
 * Every descendant of this process, walking down from it through the
 * kernel's children lists: a few files however many processes the machine
 * runs (a server with thousands of backends).
 */
static void
walk_descendants(PidList *list)
{
	append_children(list, getpid());
	for (int i = 0; i < list->count; i++)
		append_children(list, list->pids[i]);
}

/*
 * The same from every process's parent in /proc, for a kernel without
 * children lists (CONFIG_PROC_CHILDREN unset).
 */
static void
scan_descendants(PidList *list)
{
	DIR		   *proc = opendir("/proc");
	struct dirent *entry;
	PidList		all = {0};
	PidList		parents = {0};
	bool		changed = true;

	if (proc == NULL)
		return;
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
		if (!append_pid(&all, (pid_t) pid) || !append_pid(&parents, (pid_t) parent))
			break;
	}
	closedir(proc);
	/* Breadth first: each round adds the children of what is listed. */
	while (changed)
	{
		changed = false;
		for (int i = 0; i < all.count; i++)
		{
			bool		listed = false;
			bool		below = parents.pids[i] == getpid();

			for (int j = 0; j < list->count && !listed; j++)
			{
				listed = list->pids[j] == all.pids[i];
				below = below || list->pids[j] == parents.pids[i];
			}
			if (!listed && below)
			{
				append_pid(list, all.pids[i]);
				changed = true;
			}
		}
	}
	free(all.pids);
	free(parents.pids);
}

static void
reap_children(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/*
 * SIGKILLs every descendant, reaps its own children, and again until none is
 * left: one forked meanwhile, or whose parent died meanwhile, is the
 * worker's by then (a subreaper's), and is found in the next round.
 */
int
aw_hook_host_end_descendants(void)
{
	int			killed = 0;

	for (int round = 0; round < END_ROUNDS; round++)
	{
		PidList		descendants = {0};

		if (children_files)
			walk_descendants(&descendants);
		else
			scan_descendants(&descendants);
		for (int i = 0; i < descendants.count; i++)
		{
			if (kill(descendants.pids[i], SIGKILL) == 0 && round == 0)
				killed++;
		}
		free(descendants.pids);
		reap_children();
		if (descendants.count == 0)
			return killed;
		/* Dying takes the kernel a moment: zombies are reaped next round. */
		pg_usleep(ROUND_PAUSE_US);
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
	char		own_children[64];

	if (adopted)
		return 0;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
		return -1;
	snprintf(own_children, sizeof(own_children), "/proc/%d/task/%d/children",
			 (int) getpid(), (int) getpid());
	children_files = access(own_children, R_OK) == 0;
	on_proc_exit(end_descendants_at_exit, (Datum) 0);
	adopted = true;
	return 0;
}
