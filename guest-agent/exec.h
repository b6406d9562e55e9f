/* lg-agent: execute_command and cancel: the running commands, their deadlines, tree kills and answers. */
#ifndef LG_EXEC_H
#define LG_EXEC_H

#include <poll.h>

#include "util.h"

#define MAX_COMMANDS 64
/* pollfds a command can need: stdin, stdout, stderr. */
#define EXEC_POLLFDS (3 * MAX_COMMANDS)

int exec_fill_poll(struct pollfd *pfd, bool want_output);
void exec_handle_poll(const struct pollfd *pfd);
/* Reaps every exited child (ours or orphans reparented to us). */
void exec_reap(void);
/* Timeouts, kill retries, completed commands; then sends buffered output. */
void exec_tick(void);
/* ms until exec_tick has timed work, or -1. */
int exec_timeout_ms(int64_t now);
/* Kills every command tree and remaining descendant, waiting up to ms for them to die. */
void exec_kill_all(int ms);

#endif
