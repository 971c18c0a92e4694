/* Drives the handshake state machine (ei_glue/handshake.c) of one role over a
 * fuzzed peer byte stream, as conn.c drives it over a socket. Input layout:
 *   byte 0   the runtime's answers: bits 0-2 the status for a send_name
 *            (CNODE__HS_ST_*, values past the enum too), bit 3 "have a live
 *            connection" for `alive`, bit 4 refuse a proven peer (close)
 *   byte 1   seed of the read sizes (the stream arrives split anywhere)
 *   rest     what the peer sends
 * Our side: name fz@host, cookie "fuzzcookie", challenge 0x01020304, so a
 * seed holding the right digests gets to UP. */
#ifndef CNODE_FUZZ_HS_DRIVE_H
#define CNODE_FUZZ_HS_DRIVE_H

#include "fuzz.h"

#define FZ_HS_NAME "fz@host"
#define FZ_HS_PEER "peer@host"
#define FZ_HS_COOKIE "fuzzcookie"
#define FZ_HS_CHALLENGE 0x01020304u

static void
fz_hs_drain(cnode__hs *hs, unsigned *rnd)
{
    const char *p;
    size_t n = cnode__hs_output(hs, &p);
    FZ_CHECK(n <= CNODE__HS_OUT_MAX);
    volatile char sink = 0;
    for (size_t k = 0; k < n; k++)
        sink ^= p[k];
    (void)sink;
    /* a socket takes a part, sometimes */
    *rnd = *rnd * 1103515245u + 12345u;
    cnode__hs_written(hs, (*rnd >> 16) % 4 == 0 ? n / 2 : n);
}

static void
fz_hs_drive(int role, const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    unsigned answers = data[0], rnd = data[1];
    char *in = fz_dup(data + 2, size - 2);
    size_t len = size - 2, pos = 0;
    cnode__hs hs;
    if (role == CNODE__HS_DIAL)
        cnode__hs_init_dial(&hs, FZ_HS_NAME, CNODE__DFLAGS_OURS, 7, FZ_HS_COOKIE, strlen(FZ_HS_COOKIE), FZ_HS_PEER,
                            FZ_HS_CHALLENGE);
    else
        cnode__hs_init_accept(&hs, FZ_HS_NAME, CNODE__DFLAGS_OURS, 7, FZ_HS_COOKIE, strlen(FZ_HS_COOKIE),
                              FZ_HS_CHALLENGE);
    int v = CNODE__HS_AGAIN, closed = 0;
    for (int turns = 0; turns < 4096; turns++) {
        fz_hs_drain(&hs, &rnd);
        if (v == CNODE__HS_NAME) {
            v = cnode__hs_answer_name(&hs, (int)(answers & 7));
            continue;
        }
        if (v == CNODE__HS_ALIVE) {
            v = cnode__hs_answer_alive(&hs, (answers >> 3) & 1);
            continue;
        }
        if (v == CNODE__HS_PROVEN) {
            FZ_CHECK(role == CNODE__HS_ACCEPT && hs.named);
            if ((answers >> 4) & 1)
                break; /* the runtime closes instead */
            v = cnode__hs_answer_proven(&hs);
            continue;
        }
        if (v == CNODE__HS_UP || v == CNODE__HS_FAIL || closed)
            break;
        size_t want = cnode__hs_want(&hs);
        FZ_CHECK(want >= 1 && want <= CNODE__HS_BODY_MAX + 2);
        rnd = rnd * 1103515245u + 12345u;
        size_t chunk = 1 + (rnd >> 16) % 40;
        if (chunk > len - pos)
            chunk = len - pos;
        size_t used = 99999;
        v = cnode__hs_input(&hs, in + pos, chunk, &used);
        FZ_CHECK(used <= chunk);
        FZ_CHECK(v == CNODE__HS_AGAIN ? used == chunk : 1);
        if (chunk == 0)
            closed = 1; /* len 0: the peer closed; the machine must have failed */
        pos += used;
    }
    if (closed)
        FZ_CHECK(v == CNODE__HS_FAIL && hs.fail == CNODE__HS_F_CLOSED);
    if (v == CNODE__HS_FAIL)
        FZ_CHECK(hs.fail != CNODE__HS_F_NONE && hs.why);
    if (v == CNODE__HS_UP) {
        FZ_CHECK(cnode__hs_want(&hs) == 0);
        FZ_CHECK(memchr(hs.peer_name, 0, sizeof hs.peer_name) != NULL);
        if (role == CNODE__HS_DIAL)
            FZ_CHECK(strcmp(hs.peer_name, FZ_HS_PEER) == 0);
        FZ_CHECK(cnode__dflags_acceptable(hs.peer_flags));
        /* once up, the machine takes nothing more */
        size_t used = 1;
        FZ_CHECK(cnode__hs_input(&hs, "x", 1, &used) == CNODE__HS_UP && used == 0);
    }
    free(in);
}

#endif
