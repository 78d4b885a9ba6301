/*-------------------------------------------------------------------------
 *
 * disk_space.c
 *		Free space of the file systems the server writes to: the data
 *		directory, pg_wal (often a file system of its own) and every
 *		tablespace.
 *
 * A full disk stops every client's writes while a heartbeat may still fit
 * (a WAL segment has room left): the view shows the space before it runs
 * out.  Read after a tick, at most once a second (schedule.c): one statvfs
 * per location and a look at pg_tblspc, some 4 us, which back-to-back ticks
 * would feel.  The space is what an unprivileged process may use (f_bavail),
 * as the server's own files are not written by root.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <sys/statvfs.h>

#include "miscadmin.h"

#include "disk_space.h"

/*
 * Takes path's file system if a smaller share of it is free than of the one
 * so far.  The share, not the bytes: status judges in percent, and a large
 * disk 97 % full must not hide behind a small tablespace that is nearly
 * empty but has fewer bytes free.
 */
static void
consider(DiskSpace *space, const char *path, const char *where)
{
	struct statvfs fs;
	int64		free_bytes;
	int64		size_bytes;

	if (statvfs(path, &fs) != 0)
		return;
	free_bytes = (int64) fs.f_bavail * (int64) fs.f_frsize;
	size_bytes = (int64) fs.f_blocks * (int64) fs.f_frsize;
	if (size_bytes <= 0)
		return;
	if (space->free_bytes < 0 ||
		(double) free_bytes / (double) size_bytes < (double) space->free_bytes / (double) space->size_bytes)
	{
		space->free_bytes = free_bytes;
		space->size_bytes = size_bytes;
		strlcpy(space->where, where, sizeof(space->where));
	}
}

void
disk_space_measure(DiskSpace *space)
{
	DIR		   *tablespaces;
	struct dirent *entry;

	space->free_bytes = -1;
	space->size_bytes = -1;
	space->where[0] = '\0';
	/* The worker's working directory is the data directory. */
	consider(space, DataDir, DataDir);
	consider(space, "pg_wal", "pg_wal");
	tablespaces = opendir("pg_tblspc");
	if (tablespaces == NULL)
		return;
	while ((entry = readdir(tablespaces)) != NULL)
	{
		char		link[MAXPGPATH];
		char		target[MAXPGPATH];
		ssize_t		length;

		if (entry->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "pg_tblspc/%s", entry->d_name);
		length = readlink(link, target, sizeof(target) - 1);
		if (length < 0)
			strlcpy(target, link, sizeof(target));
		else
			target[length] = '\0';
		consider(space, link, target);
	}
	closedir(tablespaces);
}
