/* Everything a connected peer's packet reaches after the control decoder: the
 * runtime's dispatch (cnode/dispatch.c) and the hooks behind it, i.e. the
 * rex request decoder and the erpc spawn request decoder (cnode/server.c), the
 * erpc client's replies (cnode/erpc.c) and the pg scope's message decoders
 * (pg/proto.c: discover, sync, join, leave, DOWN, replies). One node for the
 * whole run, made with no I/O thread and a stand-in epmd on loopback (the
 * node registers at start); every input is one packet from a peer whose
 * record exists but whose connection does not (what the node sends back is
 * dropped or fails as to a peer that went away). A registered function fz:echo/1
 * and a pg scope `fzscope` give the decoders something to reach (requests for
 * cnode_demo in the corpus are answered undef: the demo service belongs to the
 * cnode command, not the library).
 * Structure-aware mutator: ctl_mutator.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode.h"
#include "cnode/internal.h"
#include "ctl_mutator.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
size_t
LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    return ctl_mutate(data, size, max_size, seed);
}

static cnode_node *node;
static cnode_pg_scope *scope;
static int epmd_fd = -1;

/* A stand-in epmd: ALIVE2 is answered with creation 1 and the socket held
 * open (the node keeps its registration socket); PORT_PLEASE2 with "not
 * registered", so that no dial goes anywhere. */
static void *
epmd_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(epmd_fd, NULL, NULL);
        if (c < 0)
            continue;
        unsigned char b[512];
        ssize_t n = read(c, b, sizeof b);
        if (n >= 3 && b[2] == 120) {
            static const unsigned char ok[6] = {118, 0, 0, 0, 0, 1};
            if (write(c, ok, sizeof ok) != (ssize_t)sizeof ok)
                close(c);
            continue; /* held: the node closes it at exit */
        }
        if (n >= 3 && b[2] == 122) {
            static const unsigned char no[2] = {119, 1};
            if (write(c, no, sizeof no) != (ssize_t)sizeof no) {
                /* nothing to do: the dial fails either way */
            }
        }
        close(c);
    }
    return NULL;
}

static void
echo(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    ei_x_buff r;
    ei_x_new(&r);
    int idx = a->idx[0], end = idx;
    if (ei_skip_term(a->buf, &end) == 0)
        ei_x_append_buf(&r, a->buf + idx, end - idx);
    else
        ei_x_encode_atom(&r, "bad");
    cnode_reply(ctx, &r);
    ei_x_free(&r);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    epmd_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (epmd_fd < 0 || bind(epmd_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(epmd_fd, 16) != 0 ||
        getsockname(epmd_fd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "fuzz_dispatch: no loopback socket for the stand-in epmd\n");
        abort();
    }
    char port[16];
    snprintf(port, sizeof port, "%u", ntohs(sa.sin_port));
    setenv("ERL_EPMD_PORT", port, 1);
    pthread_t t;
    pthread_create(&t, NULL, epmd_main, NULL);
    pthread_detach(t);
    cnode_node_opts o = {0};
    o.name = "fz@localhost";
    o.cookie = "fuzzcookie";
    o.no_io_thread = 1;
    o.workers = 1;
    cnode_error err = {0};
    if (cnode_node_new(&o, &node, &err) != 0) {
        fprintf(stderr, "fuzz_dispatch: node: %s\n", err.message);
        abort();
    }
    cnode_register_function(node, "fz", "echo", 1, echo, NULL);
    cnode_pg_scope_start(node, "fzscope", NULL, &scope);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fz_dup(data, size);
    cnode__ctl c;
    if (decode(b, size, &c) > 0) {
        pthread_mutex_lock(&node->lock);
        cnode__peer *peer = cnode__peer_get(node, "peer@localhost", 1);
        if (peer)
            cnode__dispatch(node, peer, &c);
        pthread_mutex_unlock(&node->lock);
        /* what the dispatch queued (callbacks, post hooks, pg publishing) runs in a loop turn */
        cnode_poll(node, 0);
    }
    free(b);
    return 0;
}
