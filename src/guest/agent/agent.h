/* lg-agent: process-wide configuration and the handlers each op module provides. */
#ifndef LG_AGENT_H
#define LG_AGENT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

struct agent {
	bool init_mode;      /* PID 1 of the micro-VM: owns mounts, clock, hostname, power */
	bool mounted;
	/* From init's diskMiB: the largest file a command or write_file may make, 0 for no limit. */
	uint64_t max_file_bytes;
	/* Commands run as cmd_uid:cmd_gid rather than as the agent: always in the VM (1000:1000 unless
	 * init names the uid that owns the workspace), and for a root agent that init told so. What the
	 * agent creates in the workspace is then chowned to them, so that commands can change it. */
	bool drop_privs;
	uid_t cmd_uid;
	gid_t cmd_gid;
};

extern struct agent g;

/* Owner of the VM's commands when init does not name one. */
#define DEFAULT_COMMAND_ID 1000

/* fsops.c */
void op_read_file(req_t *r);
void op_write_file(req_t *r);
void op_list_directory(req_t *r);
void op_search(req_t *r);
/* sys.c */
void op_init(req_t *r);
/* exec.c */
void op_execute_command(req_t *r);
void op_cancel(req_t *r);

#endif
