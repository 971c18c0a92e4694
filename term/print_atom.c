/* term/print_atom.c: atoms and integers as io_lib and erts print them. */
#include "term/text.h"

/* ---- printing -------------------------------------------------------------------------------------------------- */

int
is_reserved(const atomtxt *a)
{
    static const char *const words[] = {"after", "and",  "andalso", "band",   "begin",   "bnot", "bor", "bsl",  "bsr",
                                        "bxor",  "case", "catch",   "cond",   "div",     "end",  "fun", "if",   "let",
                                        "not",   "of",   "or",      "orelse", "receive", "rem",  "try", "when", "xor"};
    if (a->n > 7)
        return 0;
    char s[8];
    for (unsigned i = 0; i < a->n; i++) {
        if (a->cp[i] > 127)
            return 0;
        s[i] = (char)a->cp[i];
    }
    s[a->n] = 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(s, words[i]) == 0)
            return 1;
    return 0;
}

/* io_lib:quote_atom/2's letters: the first lower-case, the rest name chars. */
int
io_lower(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7);
}

int
io_name_char(uint32_t c)
{
    return io_lower(c) || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= '0' && c <= '9') || c == '_' ||
           c == '@';
}

/* io_lib's string_char/4: one character inside quotes q. */
void
put_quoted_char(sbuf *o, uint32_t c, char q)
{
    static const char esc[] = {
        ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't', ['\v'] = 'v', ['\b'] = 'b', ['\f'] = 'f', [27] = 'e', [127] = 'd'};
    if (c == (uint32_t)q || c == '\\') {
        sb_c(o, '\\');
        sb_c(o, (char)c);
    } else if (c >= ' ' && c <= '~') {
        sb_c(o, (char)c);
    } else if (c >= 0xA0 && c <= 0xFF) {
        sb_cp(o, c);
    } else if (c > 0xFF) {
        char t[16];
        snprintf(t, sizeof t, "\\x{%X}", (unsigned)c);
        sb_s(o, t);
    } else if (c < sizeof esc && esc[c]) {
        sb_c(o, '\\');
        sb_c(o, esc[c]);
    } else {
        char t[8];
        snprintf(t, sizeof t, "\\%03o", (unsigned)c);
        sb_s(o, t);
    }
}

/* io_lib:write_atom_as_latin1/1. */
void
put_atom(sbuf *o, const atomtxt *a)
{
    int quote = a->n == 0 || !io_lower(a->cp[0]) || is_reserved(a);
    for (unsigned i = 1; i < a->n && !quote; i++)
        quote = !io_name_char(a->cp[i]);
    if (!quote) {
        for (unsigned i = 0; i < a->n; i++)
            sb_cp(o, a->cp[i]);
        return;
    }
    sb_c(o, '\'');
    for (unsigned i = 0; i < a->n; i++)
        put_quoted_char(o, a->cp[i], '\'');
    sb_c(o, '\'');
}

/* erts's print_atom_name (fun_to_list/1): it looks at UTF-8 bytes, and its
 * output reaches io_lib as one character per byte. */
static int
erts_lower(unsigned c)
{
    return (c >= 'a' && c <= 'z') || (c >= 223 && c <= 255 && c != 247);
}

static int
erts_alnum(unsigned c)
{
    return erts_lower(c) || (c >= 'A' && c <= 'Z') || (c >= 192 && c <= 222 && c != 215) || (c >= '0' && c <= '9');
}

static unsigned
erts_latin1_char(const unsigned char *s, size_t i, size_t n)
{
    unsigned c1 = s[i], c2 = i + 1 < n ? s[i + 1] : 0;
    if ((c1 & 0x80) == 0)
        return c1;
    if ((c1 & 0xE0) == 0xC0)
        return (c1 & 0x1F) << 6 | (c2 & 0x3F);
    if ((c1 & 0xC0) == 0x80)
        return 'a';
    return 0;
}

void
put_erts_atom(sbuf *o, const atomtxt *a)
{
    unsigned char s[255 * 4];
    size_t n = 0;
    for (unsigned i = 0; i < a->n; i++)
        n += cnode__utf8_put(s + n, a->cp[i]);
    if (n == 0) {
        sb_s(o, "''");
        return;
    }
    int quote = !erts_lower(erts_latin1_char(s, 0, n));
    for (size_t i = 1; i < n && !quote; i++) {
        unsigned lc = erts_latin1_char(s, i, n);
        quote = !erts_alnum(lc) && lc != '_';
    }
    if (quote)
        sb_c(o, '\'');
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        char t[8];
        switch (c) {
        case '\'':
            sb_s(o, "\\'");
            break;
        case '\\':
            sb_s(o, "\\\\");
            break;
        case '\n':
            sb_s(o, "\\n");
            break;
        case '\f':
            sb_s(o, "\\f");
            break;
        case '\t':
            sb_s(o, "\\t");
            break;
        case '\r':
            sb_s(o, "\\r");
            break;
        case '\b':
            sb_s(o, "\\b");
            break;
        case '\v':
            sb_s(o, "\\v");
            break;
        default:
            if (c < ' ') {
                snprintf(t, sizeof t, "\\%03o", c);
                sb_s(o, t);
            } else if (c >= 0x80) {
                size_t k = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
                if (c == 0xC2 && i + 1 < n && s[i + 1] < 0xA0) {
                    snprintf(t, sizeof t, "\\%03o", (unsigned)s[i + 1]);
                    sb_s(o, t);
                    i++;
                } else {
                    for (size_t j = 0; j < k && i < n; j++, i++)
                        sb_cp(o, s[i]);
                    i--;
                }
            } else {
                sb_c(o, (char)c);
            }
        }
    }
    if (quote)
        sb_c(o, '\'');
}

int
put_bigint(sbuf *o, const cnode__int *v)
{
    int64_t small;
    if (cnode__int_small(v, &small)) {
        sb_i64(o, small);
        return 0;
    }
    char *d = cnode__tt_decimal(v->mag, v->n, v->neg);
    if (!d)
        return -1;
    sb_s(o, d);
    free(d);
    return 0;
}
