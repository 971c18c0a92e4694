/* Elixir 1.14's inspect/1, the text side: the bounded string builder,
 * atoms (:atom, :"quoted", Elixir aliases), keyword keys, numbers
 * (Inspect.Float and io_lib_format:fwrite_g/1), strings and charlists with
 * inspect's printable_limit. The term walker is in inspect.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode_balancer.h"
#include "ei_glue/reader.h"
#include "term/inspect.h"

#define PRINTABLE_LIMIT 4096

/* ---- string builder ---- */

void
cnode__sb_init(cnode__sb *s, char *buf, size_t cap)
{
    s->p = buf;
    s->cap = cap;
    s->len = 0;
    s->cut = 0;
    if (cap)
        buf[0] = 0;
}

void
cnode__sb_put(cnode__sb *s, const char *d, size_t n)
{
    if (s->cap == 0 || s->len + n + 1 > s->cap) {
        size_t room = s->cap > s->len + 1 ? s->cap - s->len - 1 : 0;
        if (room) {
            memcpy(s->p + s->len, d, room);
            s->len += room;
        }
        s->cut = 1;
    } else {
        memcpy(s->p + s->len, d, n);
        s->len += n;
    }
    if (s->cap)
        s->p[s->len] = 0;
}

void
cnode__sb_str(cnode__sb *s, const char *z)
{
    cnode__sb_put(s, z, strlen(z));
}

void
cnode__sb_fmt(cnode__sb *s, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    cnode__sb_put(s, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void
cnode__sb_finish(cnode__sb *s)
{
    if (!s->cut || s->cap < 4)
        return;
    /* end on "...", not in the middle of a UTF-8 sequence */
    size_t at = s->cap - 4;
    while (at > 0 && ((unsigned char)s->p[at] & 0xC0) == 0x80)
        at--;
    memcpy(s->p + at, "...", 4);
    s->len = at + 3;
}

/* ---- atoms ---- */

/* The script of a letter past ASCII that Elixir's identifier tokenizer takes
 * (String.Tokenizer: Unicode ID_Start/ID_Continue of Identifier_Status
 * Allowed, NFC, one script per identifier): 1 Latin, 2 Greek, 3 Cyrillic; 0
 * for anything else. The ranges are those of U+00C0..U+024F, U+0370..U+052F
 * and U+1E00..U+1EFF that Elixir 1.14 leaves bare as one-letter atoms (asked
 * of `elixir -e`, one by one). Only these three scripts are known here: an
 * atom with any other character past ASCII is quoted, where Elixir may leave
 * some (Han, Arabic, combining marks...) bare. */
static int
letter_script(uint32_t c)
{
    static const struct {
        uint16_t lo, hi;
        unsigned char script;
    } allowed[] = {
        {0xC0, 0xD6, 1},    {0xD8, 0xF6, 1},    {0xF8, 0x131, 1},   {0x134, 0x13E, 1},   {0x141, 0x148, 1},   {0x14A, 0x17E, 1},
        {0x18F, 0x18F, 1},  {0x1A0, 0x1A1, 1},  {0x1AF, 0x1B0, 1},  {0x1CD, 0x1DC, 1},   {0x1DE, 0x1E3, 1},   {0x1E6, 0x1F0, 1},
        {0x1F4, 0x1F5, 1},  {0x1F8, 0x21B, 1},  {0x21E, 0x21F, 1},  {0x226, 0x233, 1},   {0x37B, 0x37D, 2},   {0x386, 0x386, 2},
        {0x388, 0x38A, 2},  {0x38C, 0x38C, 2},  {0x38E, 0x3A1, 2},  {0x3A3, 0x3CE, 2},   {0x3FC, 0x3FF, 2},   {0x400, 0x45F, 3},
        {0x48A, 0x4FF, 3},  {0x510, 0x529, 3},  {0x52E, 0x52F, 3},  {0x1E00, 0x1E99, 1}, {0x1E9E, 0x1E9E, 1}, {0x1EA0, 0x1EF9, 1}};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (c >= allowed[i].lo && c <= allowed[i].hi)
            return allowed[i].script;
    return 0;
}

/* [A-Za-z_][A-Za-z0-9_@]*[?!]?, where a letter may also be one of letter_script's,
 * all letters of one script (ASCII letters are Latin): Elixir quotes λx. */
static int
plain_identifier(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    int script = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t c = u[i];
        size_t k = 1;
        int sc;
        if (c >= 0x80) {
            if ((k = cnode__utf8_get(u + i, n - i, &c)) == 0 || (sc = letter_script(c)) == 0)
                return 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            sc = 1;
        } else if (c == '_' || (i > 0 && ((c >= '0' && c <= '9') || c == '@'))) {
            sc = 0;
        } else if (i > 0 && i + 1 == n && (c == '?' || c == '!')) {
            sc = 0;
        } else {
            return 0;
        }
        if (sc) {
            if (script && script != sc)
                return 0;
            script = sc;
        }
        i += k;
    }
    return n > 0;
}

/* "Elixir." followed by Alias segments: [A-Z][A-Za-z0-9_]* joined by dots. */
int
cnode__insp_alias(const char *s, size_t n)
{
    static const char pre[] = "Elixir.";
    if (n <= sizeof pre - 1 || memcmp(s, pre, sizeof pre - 1) != 0)
        return 0;
    size_t i = sizeof pre - 1;
    for (;;) {
        if (i >= n || !(s[i] >= 'A' && s[i] <= 'Z'))
            return 0;
        i++;
        while (i < n &&
               ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            i++;
        if (i == n)
            return 1;
        if (s[i] != '.')
            return 0;
        i++;
    }
}

static int
operator_atom(const char *s, size_t n)
{
    /* Elixir 1.14's unary and binary operators and its not_callable atoms
       (%, %{}, {}, <<>>, ..., .., ., ..//, ->), which inspect leaves unquoted as
       atoms and as keyword keys; :: and the deprecated ~~~, <|>, ^^^, ==> it
       quotes (checked with elixir -e) */
    static const char *const ops[] = {
        "+",   "-",   "*",   "/",  "==",  "!=",  "===", "!==", "<",   ">",   "<=",   ">=",  "&&", "||", "!",    "<>",
        "++",  "--",  "+++", "---", "**", "|>",  "=~",  "..",  "^",   "@",   "&",    "<<<", ">>>", "&&&", "|||", "<-",
        "\\\\", "<~",  "~>",  "<~>", "~>>", "<<~", "%",  "%{}", "{}",  "<<>>", "..//", "...", "=",  "|",  ".",   "->",
        "and", "or",  "not", "in",  "when"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strlen(ops[i]) == n && memcmp(ops[i], s, n) == 0)
            return 1;
    return 0;
}

/* Characters of a quoted atom, key or string between its quotes. */
void
cnode__insp_escaped(cnode__sb *o, const char *s, size_t n, char quote)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e = 0;
        switch (c) {
        case '\n':
            e = 'n';
            break;
        case '\r':
            e = 'r';
            break;
        case '\t':
            e = 't';
            break;
        case '\v':
            e = 'v';
            break;
        case '\b':
            e = 'b';
            break;
        case '\f':
            e = 'f';
            break;
        case 27:
            e = 'e';
            break;
        case 127:
            e = 'd';
            break;
        case 7:
            e = 'a';
            break;
        case '\\':
            e = '\\';
            break;
        default:
            if (c == (unsigned char)quote)
                e = quote;
            break;
        }
        if (e) {
            char two[2] = {'\\', e};
            cnode__sb_put(o, two, 2);
        } else if (c == '#' && i + 1 < n && s[i + 1] == '{') {
            cnode__sb_put(o, "\\#", 2);
        } else if (c < 32) {
            cnode__sb_fmt(o, "\\x%02X", c);
        } else if (c >= 0x80) {
            /* Code.Identifier.escape/2 also escapes the C1 controls (as \xNN), the
               byte order mark (\uFEFF) and the noncharacters U+FFFE, U+FFFF */
            uint32_t cp;
            size_t k = cnode__utf8_get((const unsigned char *)s + i, n - i, &cp);
            if (k == 0)
                k = 1, cp = 0;
            if (cp >= 0x80 && cp <= 0x9F)
                cnode__sb_fmt(o, "\\x%02X", (unsigned)cp);
            else if (cp == 0xFEFF)
                cnode__sb_str(o, "\\uFEFF");
            else if (cp == 0xFFFE || cp == 0xFFFF)
                cnode__sb_fmt(o, "\\x{%X}", (unsigned)cp);
            else
                cnode__sb_put(o, s + i, k);
            i += k - 1;
        } else {
            cnode__sb_put(o, (const char *)&c, 1);
        }
    }
}

void
cnode__inspect_atom(cnode__sb *o, const char *s, size_t n)
{
    if ((n == 3 && memcmp(s, "nil", 3) == 0) || (n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0)) {
        cnode__sb_put(o, s, n);
    } else if (cnode__insp_alias(s, n)) {
        cnode__sb_put(o, s + 7, n - 7);
    } else if (plain_identifier(s, n) || operator_atom(s, n)) {
        cnode__sb_put(o, ":", 1);
        cnode__sb_put(o, s, n);
    } else {
        cnode__sb_put(o, ":\"", 2);
        cnode__insp_escaped(o, s, n, '"');
        cnode__sb_put(o, "\"", 1);
    }
}

void
cnode__inspect_key(cnode__sb *o, const char *name)
{
    size_t n = strlen(name);
    if (plain_identifier(name, n) || operator_atom(name, n)) {
        cnode__sb_put(o, name, n);
    } else {
        cnode__sb_put(o, "\"", 1);
        cnode__insp_escaped(o, name, n, '"');
        cnode__sb_put(o, "\"", 1);
    }
    cnode__sb_put(o, ": ", 2);
}

int
cnode_rpc_inspect_atom(const char *name, char *out, size_t cap)
{
    if (!name || !out || cap < 4)
        return CNODE_EINVAL;
    cnode__sb s;
    cnode__sb_init(&s, out, cap);
    cnode__inspect_atom(&s, name, strlen(name));
    cnode__sb_finish(&s);
    return 0;
}

/* ---- numbers ---- */

/* Shortest digits that read back as a (> 0): "d1d2...", and the exponent
 * such that a = 0.d1d2... * 10^place. */
static void
shortest(double a, char *digits, int *place)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, a);
        if (strtod(buf, NULL) == a)
            break;
    }
    /* buf: d[.ddd]e[+-]xx */
    size_t k = 0;
    const char *p = buf;
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    digits[k] = 0;
    *place = atoi(p + 1) + 1;
}

/* Inspect.Float: an integral value in [1.0, 1.0e16) as the integer and
 * ".0"; anything else as io_lib_format:fwrite_g/1 (float_to_list(F, [short]))
 * writes it: the shorter of the fixed and the scientific spelling of the
 * shortest digits (fixed on a tie), except that from 2^53 up (where a double
 * is no longer exact to the unit) it is always scientific, even when longer:
 * 9025591098705020.0 is written 9.02559109870502e15. */
void
cnode__insp_float(cnode__sb *o, double v)
{
    if (v == 0) {
        cnode__sb_str(o, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    if (fabs(v) >= 1.0 && fabs(v) < 1.0e16 && trunc(v) == v) {
        cnode__sb_fmt(o, "%.0f.0", v);
        return;
    }
    char d[24], fixed[400], sci[48];
    int place;
    shortest(fabs(v), d, &place);
    int nd = (int)strlen(d);
    /* fixed */
    size_t f = 0;
    if (place <= 0) {
        f += (size_t)snprintf(fixed + f, sizeof fixed - f, "0.");
        for (int i = 0; i < -place && f < sizeof fixed - 30; i++)
            fixed[f++] = '0';
        f += (size_t)snprintf(fixed + f, sizeof fixed - f, "%s", d);
    } else if (place >= nd) {
        f += (size_t)snprintf(fixed + f, sizeof fixed - f, "%s", d);
        for (int i = nd; i < place && f < sizeof fixed - 4; i++)
            fixed[f++] = '0';
        f += (size_t)snprintf(fixed + f, sizeof fixed - f, ".0");
    } else {
        f += (size_t)snprintf(fixed + f, sizeof fixed - f, "%.*s.%s", place, d, d + place);
    }
    /* scientific */
    if (nd == 1)
        snprintf(sci, sizeof sci, "%c.0e%d", d[0], place - 1);
    else
        snprintf(sci, sizeof sci, "%c.%se%d", d[0], d + 1, place - 1);
    if (v < 0)
        cnode__sb_put(o, "-", 1);
    cnode__sb_str(o, fabs(v) >= 9007199254740992.0 || strlen(sci) < f ? sci : fixed);
}

/* A bignum's magnitude (little-endian bytes) in decimal. */
void
cnode__insp_big(cnode__sb *o, const unsigned char *le, size_t n, int neg)
{
    char *d = cnode__tt_decimal(le, n, neg);
    cnode__sb_str(o, d ? d : "?");
    free(d);
}

/* ---- strings ---- */

int
cnode__insp_escape_char(uint32_t c)
{
    return c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\b' || c == '\f' || c == 27 || c == 127 || c == 7;
}

/* String.printable?/1 */
int
cnode__insp_printable(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = cnode__utf8_get(s + i, n - i, &c);
        if (k == 0)
            return 0;
        if (!((c >= 0x20 && c <= 0x7E) || (c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD) ||
              (c >= 0x10000 && c <= 0x10FFFF) || cnode__insp_escape_char(c)))
            return 0;
        i += k;
    }
    return 1;
}

void
cnode__insp_string(cnode__sb *o, const unsigned char *s, size_t n, char quote)
{
    /* printable_limit counts characters */
    size_t at = 0, chars = 0;
    while (at < n && chars < PRINTABLE_LIMIT) {
        uint32_t c;
        size_t k = cnode__utf8_get(s + at, n - at, &c);
        at += k ? k : 1;
        chars++;
    }
    char q[1] = {quote};
    cnode__sb_put(o, q, 1);
    cnode__insp_escaped(o, (const char *)s, at, quote);
    cnode__sb_put(o, q, 1);
    if (at < n)
        cnode__sb_str(o, quote == '"' ? " <> ..." : " ++ ...");
}
