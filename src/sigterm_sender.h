/*
 * sigterm_sender.h
 *		Who sent the worker's SIGTERM (sigterm_sender.c).
 */
#ifndef ALIVE_WORKER_SIGTERM_SENDER_H
#define ALIVE_WORKER_SIGTERM_SENDER_H

#include <sys/types.h>

/*
 * Whether a SIGTERM sent by sender (PID), as sender_uid, came from a session
 * of this server (pg_terminate_backend) rather than from the OS.
 */
extern bool sigterm_from_a_session(pid_t sender, uid_t sender_uid);

#endif							/* ALIVE_WORKER_SIGTERM_SENDER_H */
