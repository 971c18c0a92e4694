/* term/inspect.h: Elixir 1.14's inspect/1 over the external term format
 * (inspect.c: terms; inspect_text.c: its text, a bounded string builder,
 * atoms, numbers, strings), for EasyRpc's messages and log lines in
 * balancer/. Not installed. */
#ifndef CNODE_TERM_INSPECT_H
#define CNODE_TERM_INSPECT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *p;
    size_t cap, len;
    int cut; /* something did not fit */
} cnode__sb;
void cnode__sb_init(cnode__sb *s, char *buf, size_t cap);
void cnode__sb_put(cnode__sb *s, const char *d, size_t n);
void cnode__sb_str(cnode__sb *s, const char *z);
void cnode__sb_fmt(cnode__sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ends the text; a cut text ends in "...". */
void cnode__sb_finish(cnode__sb *s);
/* Appends inspect/1 of one term (no 131; bounds checked). 0 or -1 (malformed). */
int cnode__inspect_term(cnode__sb *s, const char *term, size_t len);
/* Appends inspect/1 of the atom name (UTF-8). */
void cnode__inspect_atom(cnode__sb *s, const char *name, size_t n);
/* Appends a keyword key: "name: " or "\"b-c\": ". */
void cnode__inspect_key(cnode__sb *s, const char *name);
/* inspect_text.c, for inspect.c */
void cnode__insp_escaped(cnode__sb *o, const char *s, size_t n, char quote);
int cnode__insp_alias(const char *s, size_t n);
void cnode__insp_float(cnode__sb *o, double v);
void cnode__insp_big(cnode__sb *o, const unsigned char *le, size_t n, int neg);
int cnode__insp_escape_char(uint32_t c);
int cnode__insp_printable(const unsigned char *s, size_t n);
void cnode__insp_string(cnode__sb *o, const unsigned char *s, size_t n, char quote);

/* decimal.c: a magnitude's decimal text for both printers ("-" first if
 * neg), in less than quadratic time; malloc'd, NULL when out of memory. */
char *cnode__tt_decimal(const unsigned char *le, size_t n, int neg);

#endif
