/* lg-agent: what the agent does as the VM's PID 1: mounts, console, modules, identity, power. */
#ifndef LG_SYS_H
#define LG_SYS_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

/* Whether the agent acts as the VM's init (PID 1, or --init): set once by main from its arguments. */
void sys_set_init(bool on);
bool sys_is_init(void);
/* Mounts the pseudo filesystems, attaches fds 0-2 to the console, loads /lib/modules/lg/order. */
void sys_early_init(void);
/* Keeps fds 0-2 open (to /dev/null at worst) so later pipes never land on them. */
void sys_ensure_std_fds(void);
void sys_protect_from_oom(void);
/* Mounts a workspace that init left pending (a lazy mount) before an op that uses it; on failure answers
 * request `req_id` with the error and returns false. True at once when there is nothing to mount. */
bool sys_workspace_ready(uint32_t req_id);
/* Applies init's arguments of request `r` (reseed, clock, hostname, command identity, workspace mount);
 * on a bad argument or a failed mount answers `r` with the error and returns false. */
bool sys_apply_init(req_t *r);
/* `hello` may carry the host's time (timeMs): the VM's init sets its clock from it. */
void sys_sync_clock(req_t *r);
/* Syncs, then powers off (PID 1) or exits with `code`. */
__attribute__((noreturn)) void sys_exit(int code);

#endif
