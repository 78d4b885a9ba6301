/*
 * python_loader.h
 *		The embedding library's entry points (python_loader.c).
 */
#ifndef ALIVE_WORKER_PYTHON_LOADER_H
#define ALIVE_WORKER_PYTHON_LOADER_H

/* Found with dlsym in the embedding library; see alive_worker/_bridge.h. */
typedef struct EmbeddedPython
{
	int			(*start) (void);
	int			(*tick) (int settings_generation, int previous_tick_committed);
	/* Raises, at elevel, the error Python left, if result says there is one. */
	void		(*finish_call) (int result, int elevel);
	int			(*hook) (void);
	void		(*hook_begin) (void);
	int			(*hook_end) (void);
	void		(*set_hook_cause) (int (*cause) (void));
} EmbeddedPython;

extern EmbeddedPython embedded_python;

/*
 * Loads the embedding library and starts Python, outside any transaction;
 * FATAL, with the reason, if either fails.
 */
extern void start_python(void);

#endif							/* ALIVE_WORKER_PYTHON_LOADER_H */
