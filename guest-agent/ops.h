/* lg-agent: the op handlers dispatch.c routes requests to, each defined by the unit named beside it. */
#ifndef LG_OPS_H
#define LG_OPS_H

#include "proto.h"

/* Each answers its request before returning, except execute_command, which answers when the command
 * is done (or at once, when it cannot start). */

/* readwrite.c */
void op_read_file(req_t *r);
void op_write_file(req_t *r);
/* list.c */
void op_list_directory(req_t *r);
/* search.c */
void op_search(req_t *r);
/* sys.c */
void op_init(req_t *r);
void op_warmup(req_t *r);
/* exec.c */
void op_execute_command(req_t *r);
void op_cancel(req_t *r);

#endif
