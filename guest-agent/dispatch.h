/* lg-agent: routing each request frame to its op handler, and the one-answer-per-request backstop. */
#ifndef LG_DISPATCH_H
#define LG_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>

/* Parses one request frame body (in place) and runs its op; every request gets one answer, now or,
 * for execute_command, later. Returns false once the host asked to shut down (a chan_frame_fn). */
bool dispatch_frame(char *body, size_t len);
/* From now on execute_command is refused (POLICY_DENIED): the agent serves the file tools only. */
void dispatch_files_only(void);
/* True once a shutdown request has been answered: the agent should exit. */
bool dispatch_shutdown_requested(void);

#endif
