/* lg-agent: what commands run as and may make: their uid/gid, and the largest file they may write. */
#ifndef LG_POLICY_H
#define LG_POLICY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Owner of the VM's commands when init does not name one. */
#define DEFAULT_COMMAND_ID 1000

/* From now on commands run as uid:gid rather than as the agent: always in the VM (1000:1000 unless
 * init names the uid that owns the workspace), and for a root agent that init told so. What the
 * agent creates in the workspace is then chowned to them, so that commands can change it. */
void policy_run_as(uid_t uid, gid_t gid);
/* True once policy_run_as was called: commands give up the agent's credentials for these. */
bool policy_drops_privs(void);
uid_t policy_uid(void);
gid_t policy_gid(void);
/* Gives a file or directory the agent just made to the commands' user (when privileges are
 * dropped); 0 or -errno. */
int policy_give_to_commands(int fd);

/* From init's diskMiB: the largest file a command or write_file may make, 0 for no limit. */
void policy_set_max_file_bytes(uint64_t n);
uint64_t policy_max_file_bytes(void);

#endif
