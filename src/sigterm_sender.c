/*
 * sigterm_sender.c
 *		Who sent the worker's SIGTERM: a session of this server, or the OS.
 *
 * A leaf, as crash_guard.c: the shim's SIGTERM handler notes the sender's
 * PID and user ID, and the shim asks here, once it stops, which of the two
 * it was; the status and the exit code follow from the verdict
 * (worker_status_record_sigterm).
 */
#include "postgres.h"

#include <stdio.h>
#include <unistd.h>

#include "miscadmin.h"

#include "sigterm_sender.h"

/*
 * Whether a SIGTERM came from a session of this server (pg_terminate_backend)
 * rather than from the OS: sent by a child of the postmaster, or by a process
 * of the server's OS user that is gone already (a session that terminated the
 * worker and disconnected at once must not pass for an operator's kill).
 * root's kill (the original README's `sudo kill -TERM`) and a live process
 * of the server's OS user that is no server process (a shell's kill) are
 * the OS's, which may stop the worker for good anyway.
 */
bool
sigterm_from_a_session(pid_t sender, uid_t sender_uid)
{
	char		path[64];
	char		stat[512];
	FILE	   *file;
	size_t		length;
	char	   *after_name;
	int			parent;

	if (sender <= 0 || sender_uid == 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int) sender);
	file = fopen(path, "r");
	if (file == NULL)
		return sender_uid == geteuid();
	length = fread(stat, 1, sizeof(stat) - 1, file);
	fclose(file);
	stat[length] = '\0';
	/* "pid (name) state ppid ...": the name may hold anything but ends at the last ')' */
	after_name = strrchr(stat, ')');
	if (after_name == NULL || sscanf(after_name + 1, " %*c %d", &parent) != 1)
		return sender_uid == geteuid();
	return parent == PostmasterPid;
}
