/* ei_glue/reader.h: the one bounded reader of Erlang's external term format.
 *
 * A cursor over buf[0, len). Every read checks what is left before it looks;
 * lengths are checked against what is left and against the limits; atoms are
 * checked as UTF-8 (or Latin-1) of at most 255 characters; floats as BEAM
 * reads them. What cnode__rd_skip accepts is what BEAM's binary_to_term
 * accepts (less compressed terms, see term.c), so a
 * term it has passed can be read by the functions below, by ei, or by any
 * printer, parser or hash without a check of its own failing.
 *
 * Every function returns 0, CNODE__NEED_MORE (the bytes end early; the
 * cursor has not moved) or CNODE__MALFORMED (r->why names the rule). No
 * globals, no recursion on the C stack; no allocation but cnode__rd_skip's
 * for the keys of maps past 1024 keys (term.c).
 */
#ifndef CNODE_EI_GLUE_READER_H
#define CNODE_EI_GLUE_READER_H

#include <stddef.h>
#include <stdint.h>

#include "ei_glue/glue.h"
#include "ei_glue/tags.h"

/* The most bytes of a bignum's magnitude BEAM takes ((2^19 - 1) words of 8). */
#define CNODE__BIG_BYTES_MAX 4194296u

typedef struct {
    const unsigned char *b;
    size_t len, pos; /* pos <= len always */
    const char *why; /* static text after a MALFORMED */
} cnode__rd;

static inline cnode__rd
cnode__rd_at(const void *buf, size_t len)
{
    cnode__rd r = {(const unsigned char *)buf, len, 0, NULL};
    return r;
}

static inline int
cnode__rd_need(const cnode__rd *r, size_t n)
{
    return r->len - r->pos >= n;
}

/* The tag at the cursor, or -1 at the end. */
static inline int
cnode__rd_tag(const cnode__rd *r)
{
    return r->pos < r->len ? r->b[r->pos] : -1;
}

static inline uint32_t
cnode__be16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static inline uint32_t
cnode__be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Big-endian unsigned reads of 1, 2 or 4 bytes, and n raw bytes. */
int cnode__rd_u8(cnode__rd *r, uint32_t *v);
int cnode__rd_u16(cnode__rd *r, uint32_t *v);
int cnode__rd_u32(cnode__rd *r, uint32_t *v);
int cnode__rd_bytes(cnode__rd *r, size_t n, const unsigned char **p);

/* One UTF-8 sequence from s[0, n) as BEAM takes it (shortest form, no
 * surrogates, at most U+10FFFF): its length, or 0 if it is none. */
size_t cnode__utf8_get(const unsigned char *s, size_t n, uint32_t *cp);
/* c as UTF-8 into o (4 bytes room); the bytes written. */
size_t cnode__utf8_put(unsigned char *o, uint32_t c);

/* An atom: its bytes (Latin-1 or UTF-8, as latin1 says) and characters. */
typedef struct {
    const unsigned char *s;
    size_t n, chars;
    int latin1;
} cnode__atom;
int cnode__rd_atom(cnode__rd *r, cnode__atom *a);

/* An integer (SMALL_INTEGER, INTEGER, SMALL_BIG, LARGE_BIG) as a sign and a
 * little-endian magnitude without high zero bytes (n == 0 for zero). */
typedef struct {
    int neg;
    const unsigned char *mag; /* into the term, or into tmp */
    size_t n;
    unsigned char tmp[8];
} cnode__int;
int cnode__rd_int(cnode__rd *r, cnode__int *v);
/* v = (neg ? -m : m), its magnitude in v->tmp. */
void cnode__int_set(cnode__int *v, int neg, uint64_t m);
/* The value if it fits an int64_t: 1, else 0. */
int cnode__int_small(const cnode__int *v, int64_t *out);

/* NEW_FLOAT (finite bits) or FLOAT (text BEAM's parser takes, finite). */
int cnode__rd_float(cnode__rd *r, double *d);

/* BINARY or BIT_BINARY: its bytes, and the bits used of the last (8 for a
 * whole byte, 0 only for the empty bitstring). */
int cnode__rd_bits(cnode__rd *r, const unsigned char **data, size_t *nbytes, unsigned *lastbits);

/* A pid, port or reference. words: pid {num, serial}; port {id low, id high}
 * (high only for V4_PORT); ref its id words (1..5). */
typedef struct {
    int tag;
    cnode__atom node;
    uint32_t words[5];
    unsigned nwords;
    uint32_t creation;
} cnode__ident;
int cnode__rd_ident(cnode__rd *r, cnode__ident *id);

/* Headers of containers: SMALL/LARGE_TUPLE, MAP (pairs), LIST (elements,
 * before the tail), STRING (its bytes). */
int cnode__rd_tuple(cnode__rd *r, uint32_t *arity);
int cnode__rd_map(cnode__rd *r, uint32_t *pairs);
int cnode__rd_list(cnode__rd *r, uint32_t *n);
int cnode__rd_string(cnode__rd *r, const unsigned char **s, size_t *n);

/* NEW_FUN up to its free-variable count; then come Module (atom), OldIndex,
 * OldUniq (integers), Pid and num_free terms. */
typedef struct {
    uint32_t size, arity, index, num_free;
    const unsigned char *uniq; /* 16 bytes */
} cnode__fun;
int cnode__rd_fun(cnode__rd *r, cnode__fun *f);

/* EXPORT: fun Module:Function/Arity (arity any integer encoding, 0..2^31-1 as OTP 25 takes it). */
int cnode__rd_export(cnode__rd *r, cnode__atom *mod, cnode__atom *fun, uint32_t *arity);

/* Past one whole term, checking every rule above at every depth (an explicit
 * stack, no recursion). lim NULL: cnode__term_limits_default. */
int cnode__rd_skip(cnode__rd *r, const cnode__term_limits *lim);

#endif
