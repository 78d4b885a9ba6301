/*
 * _gil.h
 *		The GIL for the bridge (_gil.c).
 *
 * Plain C types only: included by _bridge.c (after postgres.h) and by
 * _gil.c (after Python.h).
 */
#ifndef ALIVE_WORKER_GIL_H
#define ALIVE_WORKER_GIL_H

/* Around PostgreSQL code run for Python: the GIL held, for PL/Python. */
extern int	aw_gil_take(void);
extern void aw_gil_give(int state);

#endif							/* ALIVE_WORKER_GIL_H */
