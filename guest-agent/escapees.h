/* lg-agent: finding (and killing) the agent's descendants that escaped their command, from /proc. */
#ifndef LG_ESCAPEES_H
#define LG_ESCAPEES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Finds every process descending from the agent that is not part of a command still running (the
 * leaders of those are `live`: a process is theirs if it is one, is in its session, or is below
 * either). With `kill_them`, SIGKILLs each. Returns how many there were. */
size_t escapees_sweep(const pid_t *live, size_t nlive, bool kill_them);

#endif
