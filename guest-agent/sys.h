/* lg-agent: what the agent does as the VM's PID 1: mounts, console, modules, identity, power. */
#ifndef LG_SYS_H
#define LG_SYS_H

#include <stdbool.h>

/* Whether the agent acts as the VM's init (PID 1, or --init): set once by main from its arguments. */
void sys_set_init(bool on);
bool sys_is_init(void);
/* Mounts the pseudo filesystems, attaches fds 0-2 to the console, loads /lib/modules/lg/order. */
void sys_early_init(void);
/* Keeps fds 0-2 open (to /dev/null at worst) so later pipes never land on them. */
void sys_ensure_std_fds(void);
void sys_protect_from_oom(void);
/* Syncs, then powers off (PID 1) or exits with `code`. */
__attribute__((noreturn)) void sys_exit(int code);

#endif
