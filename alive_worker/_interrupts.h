/*
 * _interrupts.h
 *		The watchdog that carries PostgreSQL's interrupts into a hook's
 *		Python code, and the GIL for the bridge (_interrupts.c).
 *
 * Plain C types only: included by _bridge.c (after postgres.h) and by
 * _interrupts.c (after Python.h).
 */
#ifndef ALIVE_WORKER_INTERRUPTS_H
#define ALIVE_WORKER_INTERRUPTS_H

#include <stdint.h>

/*
 * Starts the watchdog, once, on the worker's thread, after the Python side
 * has set its entry for aw_interrupt_signal() with the signal blocked.
 * cause() is called from the watchdog's thread and may only read flags.
 * Returns 0 or an errno.
 */
extern int	aw_interrupts_start(int postmaster_death_fd, int (*cause) (void));

/* Around a hook's Python call: arm returns at once; disarm the cause seen. */
extern void aw_interrupts_arm(void);
extern int	aw_interrupts_disarm(void);

/* Around PostgreSQL code run for a hook: the kick stays blocked there. */
extern void aw_interrupts_enter_postgres(void);
extern void aw_interrupts_leave_postgres(void);

/* The cause the watchdog has seen while armed, and how long ago. */
extern int	aw_interrupts_latched(int64_t *since_us);

extern int	aw_gil_take(void);
extern void aw_gil_give(int state);

#endif							/* ALIVE_WORKER_INTERRUPTS_H */
