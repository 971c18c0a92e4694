/* The libring 1.7 hash ring (tests/data/vectors/README.md, "The ring, exactly").
 * Points live in one array sorted by point; each names its node by index
 * into the insertion-ordered node list. */
#include <stdlib.h>
#include <string.h>

#include "balancer/internal.h"

#define MAX_ATOM_BYTES 1020 /* 255 characters of up to 4 UTF-8 bytes */
#define MAX_WEIGHT 65536


struct cnode_ring {
    int otp;
    char **nodes;
    size_t nnodes, capnodes;
    cnode__ring_pt *pts;
    size_t npts;
};

/* Characters in a UTF-8 atom name, or -1 if it is not valid UTF-8; *latin1
 * set when every code point is below 256. */
static long
utf8_chars(const unsigned char *s, size_t n, int *latin1)
{
    long chars = 0;
    *latin1 = 1;
    for (size_t i = 0; i < n; chars++) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (k == 0 || i + k > n)
            return -1;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return -1;
        if (k > 2 || (k == 2 && c > 0xC3))
            *latin1 = 0;
        i += k;
    }
    return chars;
}

/* The atom as OTP >= 26 (and ei) writes it: SMALL_ATOM_UTF8 or ATOM_UTF8. */
static size_t
enc_atom_utf8(unsigned char *out, const char *name, size_t n)
{
    size_t k = 0;
    if (n <= 255) {
        out[k++] = 119;
        out[k++] = (unsigned char)n;
    } else {
        out[k++] = 118;
        out[k++] = (unsigned char)(n >> 8);
        out[k++] = (unsigned char)n;
    }
    memcpy(out + k, name, n);
    return k + n;
}

int
cnode_ring_vnode_points(const char *node, unsigned weight, uint32_t *out)
{
    if (!node || !out)
        return CNODE_EINVAL;
    size_t n = strlen(node);
    int latin1;
    long chars = utf8_chars((const unsigned char *)node, n, &latin1);
    if (n == 0 || chars < 0 || chars > 255 || n > MAX_ATOM_BYTES)
        return CNODE_EINVAL;
    /* {Node, I} encoded by hand: 131, SMALL_TUPLE 2, the atom, the integer */
    unsigned char b[3 + 3 + MAX_ATOM_BYTES + 5];
    size_t k = 0;
    b[k++] = 131;
    b[k++] = 104;
    b[k++] = 2;
    k += enc_atom_utf8(b + k, node, n);
    for (unsigned i = 1; i <= weight; i++) {
        size_t e = k;
        if (i < 256) {
            b[e++] = 97;
            b[e++] = (unsigned char)i;
        } else {
            b[e++] = 98;
            b[e++] = (unsigned char)(i >> 24);
            b[e++] = (unsigned char)(i >> 16);
            b[e++] = (unsigned char)(i >> 8);
            b[e++] = (unsigned char)i;
        }
        int rc = cnode_phash2((const char *)b, e, CNODE_RING_RANGE, &out[i - 1]);
        if (rc)
            return rc;
    }
    return 0;
}

/* An atom's name as UTF-8 from any atom encoding at key[0] (no 131). */
static int
atom_name(const unsigned char *key, size_t len, unsigned char *out, size_t *n)
{
    size_t hdr, alen;
    int latin1;
    switch (key[0]) {
    case 100: /* ATOM_EXT, Latin-1 */
    case 118: /* ATOM_UTF8_EXT */
        if (len < 3)
            return CNODE_EINVAL;
        hdr = 3;
        alen = (size_t)key[1] << 8 | key[2];
        latin1 = key[0] == 100;
        break;
    default: /* 115 SMALL_ATOM_EXT, 119 SMALL_ATOM_UTF8_EXT */
        if (len < 2)
            return CNODE_EINVAL;
        hdr = 2;
        alen = key[1];
        latin1 = key[0] == 115;
        break;
    }
    if (hdr + alen != len)
        return CNODE_EINVAL;
    const unsigned char *s = key + hdr;
    size_t k = 0;
    for (size_t i = 0; i < alen; i++) {
        if (latin1 && s[i] >= 0x80) {
            out[k++] = (unsigned char)(0xC0 | s[i] >> 6);
            out[k++] = (unsigned char)(0x80 | (s[i] & 0x3F));
        } else {
            out[k++] = s[i];
        }
        if (k > MAX_ATOM_BYTES)
            return CNODE_EINVAL;
    }
    *n = k;
    return 0;
}

int
cnode_ring_key_hash(const char *key, size_t key_len, int otp_release, uint32_t *hash)
{
    if (!key || !hash || key_len == 0)
        return CNODE_EINVAL;
    const unsigned char *k = (const unsigned char *)key;
    size_t len = key_len;
    if (k[0] == 131) {
        k++;
        len--;
    }
    if (len == 0)
        return CNODE_EINVAL;
    if (k[0] != 100 && k[0] != 115 && k[0] != 118 && k[0] != 119)
        return cnode_phash2(key, key_len, CNODE_RING_RANGE, hash);
    /* libring hashes term_to_binary(Atom) instead of the atom */
    unsigned char name[MAX_ATOM_BYTES + 4];
    size_t n;
    int latin1;
    if (atom_name(k, len, name, &n) || utf8_chars(name, n, &latin1) < 0)
        return CNODE_EINVAL;
    unsigned char bin[6 + 1 + 3 + MAX_ATOM_BYTES + 4];
    size_t t = 6; /* 131, BINARY_EXT, length: filled below */
    bin[t++] = 131;
    if (otp_release < 26 && latin1) { /* 0 counts as 25 */
        /* OTP <= 25's default: ATOM_EXT with the Latin-1 bytes */
        bin[t++] = 100;
        size_t lpos = t;
        t += 2;
        size_t chars = 0;
        for (size_t i = 0; i < n; chars++) {
            if (name[i] < 0x80) {
                bin[t++] = name[i++];
            } else {
                bin[t++] = (unsigned char)((name[i] & 0x1F) << 6 | (name[i + 1] & 0x3F));
                i += 2;
            }
        }
        bin[lpos] = (unsigned char)(chars >> 8);
        bin[lpos + 1] = (unsigned char)chars;
    } else {
        t += enc_atom_utf8(bin + t, (const char *)name, n);
    }
    size_t blen = t - 6;
    bin[0] = 131;
    bin[1] = 109;
    bin[2] = (unsigned char)(blen >> 24);
    bin[3] = (unsigned char)(blen >> 16);
    bin[4] = (unsigned char)(blen >> 8);
    bin[5] = (unsigned char)blen;
    return cnode_phash2((const char *)bin, t, CNODE_RING_RANGE, hash);
}

int
cnode_ring_new(int otp_release, cnode_ring **out)
{
    if (!out || otp_release < 0)
        return CNODE_EINVAL;
    cnode_ring *r = calloc(1, sizeof *r);
    if (!r)
        return CNODE_ENOMEM;
    r->otp = otp_release ? otp_release : 25;
    *out = r;
    return 0;
}

void
cnode_ring_free(cnode_ring *ring)
{
    if (!ring)
        return;
    for (size_t i = 0; i < ring->nnodes; i++)
        free(ring->nodes[i]);
    free(ring->nodes);
    free(ring->pts);
    free(ring);
}

static int
pt_cmp(const void *a, const void *b)
{
    const cnode__ring_pt *x = a, *y = b;
    return x->point < y->point ? -1 : x->point > y->point;
}

size_t
cnode__ring_lower_bound(const cnode__ring_pt *pts, size_t n, uint32_t h)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pts[mid].point < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static size_t
lower_bound(const cnode_ring *r, uint32_t h)
{
    return cnode__ring_lower_bound(r->pts, r->npts, h);
}

static long
find_node(const cnode_ring *r, const char *node)
{
    for (size_t i = 0; i < r->nnodes; i++)
        if (strcmp(r->nodes[i], node) == 0)
            return (long)i;
    return -1;
}

int
cnode_ring_add(cnode_ring *ring, const char *node, unsigned weight)
{
    if (!ring || !node || weight == 0 || weight > MAX_WEIGHT)
        return CNODE_EINVAL;
    if (find_node(ring, node) >= 0)
        return 0;
    uint32_t *p = malloc(weight * sizeof *p);
    cnode__ring_pt *fresh = malloc(weight * sizeof *fresh);
    cnode__ring_pt *merged = malloc((ring->npts + weight) * sizeof *merged);
    char *copy = strdup(node);
    int rc = p && fresh && merged && copy ? 0 : CNODE_ENOMEM;
    if (!rc && ring->nnodes == ring->capnodes) {
        size_t cap = ring->capnodes ? ring->capnodes * 2 : 8;
        char **nv = realloc(ring->nodes, cap * sizeof *nv);
        if (nv) {
            ring->nodes = nv;
            ring->capnodes = cap;
        } else {
            rc = CNODE_ENOMEM;
        }
    }
    if (!rc)
        rc = cnode_ring_vnode_points(node, weight, p);
    if (rc) {
        free(p);
        free(fresh);
        free(merged);
        free(copy);
        return rc;
    }
    /* points already taken stay with their node (first added wins) */
    size_t nf = 0;
    for (unsigned i = 0; i < weight; i++) {
        size_t at = lower_bound(ring, p[i]);
        if (at < ring->npts && ring->pts[at].point == p[i])
            continue;
        fresh[nf].point = p[i];
        fresh[nf].owner = (uint32_t)ring->nnodes;
        nf++;
    }
    qsort(fresh, nf, sizeof *fresh, pt_cmp);
    size_t a = 0, b = 0, m = 0;
    while (a < ring->npts || b < nf) {
        if (b < nf && m > 0 && merged[m - 1].point == fresh[b].point) { /* the node's own repeat */
            b++;
            continue;
        }
        if (b >= nf || (a < ring->npts && ring->pts[a].point < fresh[b].point))
            merged[m++] = ring->pts[a++];
        else
            merged[m++] = fresh[b++];
    }
    free(ring->pts);
    ring->pts = merged;
    ring->npts = m;
    ring->nodes[ring->nnodes++] = copy;
    free(p);
    free(fresh);
    return 0;
}

int
cnode_ring_remove(cnode_ring *ring, const char *node)
{
    if (!ring || !node)
        return CNODE_EINVAL;
    long idx = find_node(ring, node);
    if (idx < 0)
        return CNODE_ENOTFOUND;
    size_t m = 0;
    for (size_t i = 0; i < ring->npts; i++) {
        if (ring->pts[i].owner == (uint32_t)idx)
            continue;
        ring->pts[m] = ring->pts[i];
        if (ring->pts[m].owner > (uint32_t)idx)
            ring->pts[m].owner--;
        m++;
    }
    ring->npts = m;
    free(ring->nodes[idx]);
    memmove(ring->nodes + idx, ring->nodes + idx + 1, (ring->nnodes - (size_t)idx - 1) * sizeof *ring->nodes);
    ring->nnodes--;
    return 0;
}

size_t
cnode_ring_node_count(const cnode_ring *ring)
{
    return ring ? ring->nnodes : 0;
}

const char *
cnode_ring_node_at(const cnode_ring *ring, size_t i)
{
    return ring && i < ring->nnodes ? ring->nodes[i] : NULL;
}

int
cnode_ring_key_to_node(const cnode_ring *ring, const char *key, size_t key_len, const char **node)
{
    if (!ring || !node)
        return CNODE_EINVAL;
    if (ring->npts == 0)
        return CNODE_EUNAVAILABLE;
    uint32_t h;
    int rc = cnode_ring_key_hash(key, key_len, ring->otp, &h);
    if (rc)
        return rc;
    size_t at = lower_bound(ring, h);
    *node = ring->nodes[ring->pts[at < ring->npts ? at : 0].owner];
    return 0;
}

int
cnode_ring_key_to_nodes(const cnode_ring *ring, const char *key, size_t key_len, size_t count, const char **nodes, size_t *n)
{
    if (!ring || !nodes || !n)
        return CNODE_EINVAL;
    *n = 0;
    if (ring->npts == 0)
        return CNODE_EUNAVAILABLE;
    uint32_t h;
    int rc = cnode_phash2(key, key_len, CNODE_RING_RANGE, &h); /* no atom conversion here */
    if (rc)
        return rc;
    if (count > ring->nnodes)
        count = ring->nnodes;
    if (count == 0)
        return 0;
    size_t at = lower_bound(ring, h);
    if (at == ring->npts) {
        nodes[(*n)++] = ring->nodes[ring->pts[0].owner];
        return 0;
    }
    size_t k = 0;
    for (size_t i = at; i < ring->npts && k < count; i++) {
        const char *cand = ring->nodes[ring->pts[i].owner];
        int seen = 0;
        for (size_t j = 0; j < k && !seen; j++)
            seen = nodes[j] == cand;
        if (!seen)
            nodes[k++] = cand;
    }
    if (k < count) /* ran out of points: libring returns its accumulator unreversed */
        for (size_t i = 0; i < k / 2; i++) {
            const char *t = nodes[i];
            nodes[i] = nodes[k - 1 - i];
            nodes[k - 1 - i] = t;
        }
    *n = k;
    return 0;
}
