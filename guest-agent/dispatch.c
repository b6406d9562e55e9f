/* lg-agent: routing each request frame to its op handler, and the one-answer-per-request backstop. */
#define _GNU_SOURCE
#include "dispatch.h"
#include "sys.h"

#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "ops.h"
#include "proto.h"

/* The connection generation whose host's init a hello already applied (0: none yet). */
static uint32_t init_applied_gen;

/* `hello` may carry init's arguments (`args.init`): a restored VM is then ready after one round trip
 * instead of two. The host resends hello until one is answered, so init is applied once per host
 * connection; the later copies are answered without applying it again (the clock would go back). */
static void op_hello(req_t *r)
{
	const jnode *init = json_get(r->doc, r->args, "init");
	if (init && init->type != J_NULL) {
		if (init->type != J_OBJ) {
			reply_error(r->id, "INVALID_ARGUMENT", 0, "args.init must be an object");
			return;
		}
		if (init_applied_gen != chan_generation() + 1) {
			req_t sub = *r;
			sub.args = init;
			if (!sys_apply_init(&sub))
				return;
			init_applied_gen = chan_generation() + 1;
		}
	}
	jw_t w;
	buf_t b;
	sys_sync_clock(r);
	reply_begin(&w, &b, r->id);
	jw_obj(&w);
	jw_key(&w, "v");
	jw_int(&w, 1);
	jw_key(&w, "agent");
	jw_cstr(&w, LG_AGENT_NAME);
	jw_key(&w, "pid");
	jw_int(&w, getpid());
	if (init && init->type == J_OBJ) {
		jw_key(&w, "init");
		jw_bool(&w, true);
	}
	jw_obj_end(&w);
	reply_end(&w, &b, r->id);
}

static bool shutdown_requested;

bool dispatch_shutdown_requested(void) { return shutdown_requested; }

static void op_shutdown(req_t *r)
{
	reply_empty(r->id);
	shutdown_requested = true;
}

/* `answers_later`: the op may return before its answer, which it sends when the work is done.
 * `uses_workspace`: a lazy workspace mount (sys.c) is made before the op runs. */
static const struct {
	const char *name;
	void (*fn)(req_t *);
	bool answers_later;
	bool uses_workspace;
} ops[] = {
	{"hello", op_hello, false, false},
	{"init", op_init, false, false},
	{"warmup", op_warmup, false, false},
	{"read_file", op_read_file, false, true},
	{"write_file", op_write_file, false, true},
	{"list_directory", op_list_directory, false, true},
	{"search", op_search, false, true},
	{"execute_command", op_execute_command, true, true},
	{"cancel", op_cancel, false, false},
	{"shutdown", op_shutdown, false, false},
};

static bool files_only;

void dispatch_files_only(void)
{
	files_only = true;
}

static void handle_frame(char *body, size_t len)
{
	jdoc d;
	if (!json_parse(&d, body, len)) {
		if (d.has_early_id)
			reply_error(d.early_id, "INVALID_ARGUMENT", 0, "malformed request: %s", d.error);
		else
			log_msg("dropped a malformed frame without a readable id: %s", d.error);
		json_free(&d);
		return;
	}
	const jnode *root = json_root(&d);
	const jnode *idn = json_get(&d, root, "id");
	if (!idn || idn->type != J_NUM || !(idn->num >= 0 && idn->num <= 4294967295.0) ||
	    idn->num != (double)(uint32_t)idn->num) {
		log_msg("dropped a request without a valid id");
		json_free(&d);
		return;
	}
	req_t r = {.id = (uint32_t)idn->num, .doc = &d};
	const jnode *op = json_get(&d, root, "op");
	const jnode *args = json_get(&d, root, "args");
	if (!op || op->type != J_STR) {
		reply_error(r.id, "INVALID_ARGUMENT", 0, "request needs a string \"op\"");
	} else if (args && args->type != J_OBJ && args->type != J_NULL) {
		reply_error(r.id, "INVALID_ARGUMENT", 0, "\"args\" must be an object");
	} else {
		/* A missing args is read as {} so argument-less ops need not send one. */
		static const jnode empty = {.type = J_OBJ, .child = -1, .next = -1};
		r.args = args && args->type == J_OBJ ? args : &empty;
		size_t i;
		for (i = 0; i < sizeof ops / sizeof ops[0]; i++)
			if (strlen(ops[i].name) == op->len && memcmp(ops[i].name, op->str, op->len) == 0)
				break;
		if (i == sizeof ops / sizeof ops[0]) {
			reply_error(r.id, "UNSUPPORTED_OP", 0, "unknown op \"%.64s\"", op->str);
		} else if (files_only && ops[i].fn == op_execute_command) {
			/* The jail beside a VM runs no code of the sandbox's, whatever the host asks. */
			reply_error(r.id, "POLICY_DENIED", 0, "this agent serves the file tools only; commands run in the VM");
		} else if (ops[i].uses_workspace && !sys_workspace_ready(r.id)) {
			/* answered: the lazy workspace mount failed */
		} else {
			uint64_t before = answers_sent();
			ops[i].fn(&r);
			/* execute_command answers later (or now, on a bad request); every other op answers
			 * before returning, and this is the backstop should one ever forget. */
			if (answers_sent() == before && !ops[i].answers_later)
				reply_error(r.id, "IO_ERROR", 0, "internal error: %s produced no answer", ops[i].name);
		}
	}
	json_free(&d);
}

bool dispatch_frame(char *body, size_t len)
{
	handle_frame(body, len);
	return !shutdown_requested;
}
