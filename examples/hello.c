/* hello: the smallest useful C node. It starts a hidden node, sends
 * {self(), hello} to a registered process on a BEAM node and prints the reply.
 *
 *   build/examples/hello --sname c1 --cookie secret --peer a@host --to echo
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode.h"

int
main(int argc, char **argv)
{
    const char *sname = "hello", *cookie = NULL, *peer = NULL, *to = "echo";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sname"))
            sname = argv[i + 1];
        else if (!strcmp(argv[i], "--cookie"))
            cookie = argv[i + 1];
        else if (!strcmp(argv[i], "--peer"))
            peer = argv[i + 1];
        else if (!strcmp(argv[i], "--to"))
            to = argv[i + 1];
    }
    if (!peer) {
        fprintf(stderr, "usage: hello --peer NODE [--to NAME] [--sname NAME] [--cookie C]\n");
        return 2;
    }
    cnode_node_opts o = {.name = sname, .cookie = cookie};
    cnode_node *node;
    cnode_error err = {0};
    if (cnode_node_new(&o, &node, &err) != 0) {
        fprintf(stderr, "hello: %s\n", err.message);
        return 1;
    }
    cnode_proc *self;
    cnode_proc_new(node, NULL, &self);

    ei_x_buff msg;
    ei_x_new_with_version(&msg);
    ei_x_format_wo_ver(&msg, "{~p,~a}", cnode_proc_pid(self), "hello");
    int rc = cnode_reg_send(self, to, peer, &msg);
    ei_x_free(&msg);

    cnode_msg reply = {0};
    if (rc == 0)
        rc = cnode_receive(self, 5000, &reply);
    if (rc == 0) {
        char *text = NULL;
        int idx = 1;
        ei_s_print_term(&text, reply.data.buff, &idx);
        printf("%s replied: %s\n", to, text);
        free(text);
        cnode_msg_free(&reply);
    } else {
        fprintf(stderr, "hello: no reply: %s\n", cnode_strerror(rc));
    }
    cnode_proc_close(self);
    cnode_node_close(node);
    return rc == 0 ? 0 : 1;
}
