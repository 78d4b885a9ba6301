/*
 * disk_space.h
 *		Free space where the server writes (disk_space.c).
 */
#ifndef ALIVE_WORKER_DISK_SPACE_H
#define ALIVE_WORKER_DISK_SPACE_H

typedef struct DiskSpace
{
	int64		free_bytes;		/* -1: could not be read */
	int64		size_bytes;
	char		where[MAXPGPATH];	/* the fullest of them */
} DiskSpace;

/*
 * The fullest file system (smallest share free) for the server among the data
 * directory, pg_wal and every tablespace: a few statvfs calls.
 */
extern void disk_space_measure(DiskSpace *space);

#endif							/* ALIVE_WORKER_DISK_SPACE_H */
