/* term/text.h: what the files of Erlang term text share (not installed).
 *
 *   text_out.c    the growing output string; floats as float_to_list(F, [short])
 *   order.c       reading through the shared reader (ei_glue/reader.h); term order
 *   print_atom.c  atoms and integers as io_lib and erts print them
 *   print.c       cnode_term_print: io_lib:format("~0p", [T])
 *   parse_lex.c   the parser's words: errors, characters, strings, atoms, numbers
 *   parse.c       cnode_term_parse: containers, binaries, the whole term
 *   format.c      cnode_term_format's holes
 *   module.c      module names as atoms
 *
 * Functions shared between these files are named here without a prefix and
 * linked as cnode__tt_<name>, so that the library exports none of them. */
#ifndef CNODE_TERM_TEXT_H
#define CNODE_TERM_TEXT_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode.h"
#include "cnode_term.h"
#include "ei_glue/reader.h"
#include "term/inspect.h"

#define PARSE_MAX_DEPTH 1000
#define PRINT_MAX_DEPTH 1100   /* above the walker's 1024, so the walker decides */
#define MAX_INT_CHARS 65536    /* digits in one integer literal */
#define MAX_FLOAT_CHARS 1024   /* characters in one float literal */
#define MAX_SEGMENT_BITS 65536 /* Size in <<V:Size>> */
#define FLATMAP_MAX 32         /* maps up to this size print in key order */

/* Fills err (if not NULL) as the rest of the API does and returns code. */
/* An encoded term being read: the shared reader's cursor. */
typedef cnode__rd rd;

static inline int
need(const rd *r, size_t n)
{
    return cnode__rd_need(r, n);
}

/* An atom's characters (code points). */
typedef struct {
    uint32_t cp[255];
    unsigned n;
} atomtxt;

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

typedef struct {
    rd r;
    int in_string;
    uint32_t left;
} lit;

/* An operand: a term at r.pos, or a byte of a STRING_EXT (imm). */
typedef struct {
    rd r;
    int imm;
    unsigned v;
} opd;

typedef struct {
    size_t k, v; /* positions of a key and its value */
} pair;

/* A list walked as Erlang sees it: LIST_EXT elements, then a tail that may
 * be another LIST_EXT or a STRING_EXT, as a C encoder may write. */
enum { LI_TERM, LI_BYTE, LI_END, LI_TAIL, LI_BAD };

/* number < atom < reference < fun < port < pid < tuple < map < nil < list <
 * bitstring; map keys compare exactly, so all integers sort before floats. */
enum { C_BAD, C_INT, C_FLOAT, C_ATOM, C_REF, C_FUN, C_PORT, C_PID, C_TUPLE, C_MAP, C_NIL, C_LIST, C_BITS };

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    ei_x_buff *x;
    cnode_error *err; /* may be NULL */
    int failed;       /* the CNODE_E... code of the first failure, 0 while none */
    unsigned depth;
    va_list *ap; /* cnode_term_format: the arguments for its holes; NULL when parsing */
} ps;

typedef struct {
    uint32_t *c;
    size_t n, cap;
} cpbuf;

/* A magnitude in little-endian 32-bit limbs. */
typedef struct {
    uint32_t *l;
    size_t n, cap;
} big;

typedef struct {
    size_t at;     /* text offset of the key */
    int k, v, end; /* output offsets of the key, the value, the pair's end */
} mpair;

typedef struct {
    unsigned char *b;
    size_t bits, cap;
} bitbuf;

/* text_out.c: the output string, floats, strtod whatever the locale */
#define sb_put(...) cnode__tt_sb_put(__VA_ARGS__)
void sb_put(sbuf *s, const void *d, size_t n);
#define sb_c(...) cnode__tt_sb_c(__VA_ARGS__)
void sb_c(sbuf *s, char c);
#define sb_s(...) cnode__tt_sb_s(__VA_ARGS__)
void sb_s(sbuf *s, const char *z);
#define sb_cp(...) cnode__tt_sb_cp(__VA_ARGS__)
void sb_cp(sbuf *s, uint32_t c);
#define sb_u64(...) cnode__tt_sb_u64(__VA_ARGS__)
void sb_u64(sbuf *s, uint64_t v);
#define sb_i64(...) cnode__tt_sb_i64(__VA_ARGS__)
void sb_i64(sbuf *s, int64_t v);
#define tt_strtod(...) cnode__tt_strtod(__VA_ARGS__)
double tt_strtod(const char *s);
#define put_float(...) cnode__tt_put_float(__VA_ARGS__)
void put_float(sbuf *o, double v);
/* order.c: reading over the shared reader; term order */
#define skip_term(...) cnode__tt_skip_term(__VA_ARGS__)
int skip_term(rd *r);
#define skip_empty_list_headers(...) cnode__tt_skip_empty_list_headers(__VA_ARGS__)
void skip_empty_list_headers(rd *r);
#define rd_atom(...) cnode__tt_rd_atom(__VA_ARGS__)
int rd_atom(rd *r, atomtxt *a);
#define lit_next(...) cnode__tt_lit_next(__VA_ARGS__)
int lit_next(lit *it, unsigned *byte);
#define map_pairs(...) cnode__tt_map_pairs(__VA_ARGS__)
int map_pairs(rd *r, pair **out, size_t *n);
#define cmp_at(...) cnode__tt_cmp_at(__VA_ARGS__)
int cmp_at(const unsigned char *b, size_t len, size_t pa, size_t pb, unsigned depth);
#define sort_pairs(...) cnode__tt_sort_pairs(__VA_ARGS__)
int sort_pairs(const unsigned char *b, size_t len, pair *p, size_t n, unsigned depth);
/* print_atom.c: atoms and integers as io_lib and erts print them */
#define is_reserved(...) cnode__tt_is_reserved(__VA_ARGS__)
int is_reserved(const atomtxt *a);
#define io_lower(...) cnode__tt_io_lower(__VA_ARGS__)
int io_lower(uint32_t c);
#define io_name_char(...) cnode__tt_io_name_char(__VA_ARGS__)
int io_name_char(uint32_t c);
#define put_quoted_char(...) cnode__tt_put_quoted_char(__VA_ARGS__)
void put_quoted_char(sbuf *o, uint32_t c, char q);
#define put_atom(...) cnode__tt_put_atom(__VA_ARGS__)
void put_atom(sbuf *o, const atomtxt *a);
#define put_erts_atom(...) cnode__tt_put_erts_atom(__VA_ARGS__)
void put_erts_atom(sbuf *o, const atomtxt *a);
#define put_bigint(...) cnode__tt_put_bigint(__VA_ARGS__)
int put_bigint(sbuf *o, const cnode__int *v);
/* parse_lex.c: errors (perr: EBADMSG "at offset N: ..."), characters, strings, atoms, numbers */
#define perr(...) cnode__tt_perr(__VA_ARGS__)
__attribute__((format(printf, 3, 4))) int perr(ps *p, size_t at, const char *fmt, ...);
#define oom(...) cnode__tt_oom(__VA_ARGS__)
int oom(ps *p);
#define peek(...) cnode__tt_peek(__VA_ARGS__)
int peek(const ps *p, size_t ahead);
#define skip_ws(...) cnode__tt_skip_ws(__VA_ARGS__)
void skip_ws(ps *p);
#define put_bytes(...) cnode__tt_put_bytes(__VA_ARGS__)
int put_bytes(ps *p, const void *d, size_t n);
#define cp_push(...) cnode__tt_cp_push(__VA_ARGS__)
int cp_push(ps *p, cpbuf *b, uint32_t c);
#define strings(...) cnode__tt_strings(__VA_ARGS__)
int strings(ps *p, cpbuf *b);
#define put_atom_text(...) cnode__tt_put_atom_text(__VA_ARGS__)
int put_atom_text(ps *p, size_t at, const unsigned char *u, size_t n, size_t chars);
#define bare_atom(...) cnode__tt_bare_atom(__VA_ARGS__)
int bare_atom(ps *p);
#define quoted_atom(...) cnode__tt_quoted_atom(__VA_ARGS__)
int quoted_atom(ps *p);
#define put_int_mag(...) cnode__tt_put_int_mag(__VA_ARGS__)
int put_int_mag(ps *p, int neg, const unsigned char *mag, size_t n);
#define put_int64(...) cnode__tt_put_int64(__VA_ARGS__)
int put_int64(ps *p, int64_t v);
#define digit_in(...) cnode__tt_digit_in(__VA_ARGS__)
int digit_in(int c, unsigned base);
#define digits(...) cnode__tt_digits(__VA_ARGS__)
int digits(ps *p, unsigned base, big *b);
#define big_small(...) cnode__tt_big_small(__VA_ARGS__)
int big_small(const big *b, int neg, int64_t *v);
#define numeric(...) cnode__tt_numeric(__VA_ARGS__)
int numeric(ps *p, int int_only, int64_t *ival);
/* parse.c: strings as terms */
#define put_codepoints(...) cnode__tt_put_codepoints(__VA_ARGS__)
int put_codepoints(ps *p, cpbuf *sp, int res);
#define utf8_cps(...) cnode__tt_utf8_cps(__VA_ARGS__)
int utf8_cps(ps *p, const char *text, cpbuf *out);
/* format.c: one ~x hole of cnode_term_format */
#define hole(...) cnode__tt_hole(__VA_ARGS__)
int hole(ps *p);

/* parse.c: parse p's text (cnode_term_parse and _format): 0 or a CNODE_E... code. */
#define parse_all(...) cnode__tt_parse_all(__VA_ARGS__)
int parse_all(ps *p);

#define term_fail(...) cnode__tt_term_fail(__VA_ARGS__)
__attribute__((format(printf, 3, 4))) int term_fail(cnode_error *err, int code, const char *fmt, ...);

#endif
