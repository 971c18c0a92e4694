/* What every node owes the nodes it talks to: net_kernel's is_auth (without
 * it net_adm:ping hangs), a group leader that answers io requests (without
 * it a remote io:format hangs), and somewhere for logger_proxy reports. */
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"

#define PRINT_MAX 2048 /* bytes of a peer's term printed into a log line (1024 chars) */
#include "cnode/terms.h"

int
cnode__sys_name(const char *name)
{
    return strcmp(name, "net_kernel") == 0 || strcmp(name, "logger_proxy") == 0 || strcmp(name, "rex") == 0;
}

/* {'$gen_call', {From, Tag}, Request}: *req_idx is left at Request. */
static int
gen_call(const char *b, int *idx, erlang_pid *from, int *tag_idx, int *tag_end)
{
    int arity, ver;
    char a[MAXATOMLEN_UTF8];
    if (ei_decode_version(b, idx, &ver) < 0 || ei_decode_tuple_header(b, idx, &arity) < 0 || arity != 3 ||
        ei_decode_atom(b, idx, a) < 0 || strcmp(a, "$gen_call") != 0 || ei_decode_tuple_header(b, idx, &arity) < 0 ||
        arity != 2 || ei_decode_pid(b, idx, from) < 0)
        return -1;
    *tag_idx = *idx;
    if (ei_skip_term(b, idx) < 0)
        return -1;
    *tag_end = *idx;
    return 0;
}

static void
gen_reply(cnode_node *node, const erlang_pid *to, const char *b, int tag_idx, int tag_end, const char *atom)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) != 0)
        return;
    ei_x_encode_tuple_header(&x, 2);
    ei_x_append_buf(&x, b + tag_idx, tag_end - tag_idx);
    cnode__x_atom(&x, atom);
    cnode__send_term(node, to, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

int
cnode__sys_reg_send(cnode_node *node, cnode__peer *peer, const cnode__ctl *c)
{
    if (!c->to.is_name || !c->msg)
        return 0;
    const char *b = c->msg;
    if (strcmp(c->to.name, "net_kernel") == 0) {
        int idx = 0, ti, te, arity;
        erlang_pid from;
        char a[MAXATOMLEN_UTF8];
        if (gen_call(b, &idx, &from, &ti, &te) == 0 && ei_decode_tuple_header(b, &idx, &arity) == 0 && arity == 2 &&
            ei_decode_atom(b, &idx, a) == 0 && strcmp(a, "is_auth") == 0)
            gen_reply(node, &from, b, ti, te, "yes");
        else
            cnode__log(node, CNODE_LOG_DEBUG, "unsupported net_kernel request from %s ignored", peer->name);
        return 1;
    }
    if (strcmp(c->to.name, "logger_proxy") == 0) {
        char *text = NULL;
        int idx = 0;
        /* on the loop, under node->lock: print only what a log line holds */
        if (c->msg_len > PRINT_MAX)
            cnode__log(node, CNODE_LOG_WARNING, "log report from %s (%zu bytes, not printed)", peer->name,
                       c->msg_len);
        else if (ei_s_print_term(&text, b, &idx) >= 0)
            cnode__log(node, CNODE_LOG_WARNING, "log report from %s: %s", peer->name, text);
        free(text);
        return 1;
    }
    return 0;
}

/* The group leader we give remote processes: {io_request, From, ReplyAs, Req}
 * -> {io_reply, ReplyAs, Reply}. Output goes to the log hook. */
static void
gl_handler(cnode_proc *p, const cnode__xpid *sender, const char *b, size_t len)
{
    (void)sender;
    cnode_node *node = p->node;
    int idx = 0, ver, arity;
    char a[MAXATOMLEN_UTF8];
    erlang_pid from;
    if (ei_decode_version(b, &idx, &ver) < 0 || ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 4 ||
        ei_decode_atom(b, &idx, a) < 0 || strcmp(a, "io_request") != 0 || ei_decode_pid(b, &idx, &from) < 0)
        return;
    int ra = idx;
    if (ei_skip_term(b, &idx) < 0)
        return;
    int re = idx, req = idx;
    const char *reply = "ok";
    int getopts = 0;
    int rarity = 0;
    char ra_atom[MAXATOMLEN_UTF8] = "";
    if (ei_decode_tuple_header(b, &idx, &rarity) == 0 && ei_decode_atom(b, &idx, ra_atom) == 0) {
        if (strncmp(ra_atom, "get_", 4) == 0)
            reply = "eof";
        else if (strcmp(ra_atom, "put_chars") == 0 || strcmp(ra_atom, "requests") == 0 ||
                 strcmp(ra_atom, "setopts") == 0)
            reply = "ok";
        else
            reply = "enotsup";
        if (strcmp(ra_atom, "put_chars") == 0) {
            char *text = NULL;
            int i2 = req;
            if (len > PRINT_MAX)
                cnode__log(node, CNODE_LOG_INFO, "remote output (%zu bytes, not printed)", len);
            else if (ei_s_print_term(&text, b, &i2) >= 0)
                cnode__log(node, CNODE_LOG_INFO, "remote output: %s", text);
            free(text);
        }
    } else {
        idx = req;
        if (ei_decode_atom(b, &idx, ra_atom) == 0 && strcmp(ra_atom, "getopts") == 0)
            getopts = 1;
    }
    ei_x_buff x;
    if (ei_x_new_with_version(&x) != 0)
        return;
    ei_x_encode_tuple_header(&x, 3);
    cnode__x_atom(&x, "io_reply");
    ei_x_append_buf(&x, b + ra, re - ra);
    if (getopts) {
        ei_x_encode_empty_list(&x);
    } else if (strcmp(reply, "enotsup") == 0) {
        ei_x_encode_tuple_header(&x, 2);
        cnode__x_atom(&x, "error");
        cnode__x_atom(&x, "enotsup");
    } else {
        cnode__x_atom(&x, reply);
    }
    cnode__send_term(node, &from, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

int
cnode__sys_start(cnode_node *node)
{
    pthread_mutex_lock(&node->lock);
    int rc = cnode__proc_new_locked(node, NULL, 1, &node->sys_gl);
    if (rc == 0)
        node->sys_gl->sys_handler = gl_handler;
    pthread_mutex_unlock(&node->lock);
    return rc;
}
