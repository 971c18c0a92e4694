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

/* Elixir 1.14's identifier tokenizer (String.Tokenizer) and Macro.classify_atom,
 * on the tables term/gen_unicode.exs made from that Elixir and its OTP:
 * term/ident_tables.h. */
#include "term/ident_tables.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The identifier range holding c, or NULL. */
static const struct idt_range *
ident_range(uint32_t c)
{
    size_t lo = 0, hi = COUNT(idt_ident);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < idt_ident[mid].lo)
            hi = mid;
        else if (c > idt_ident[mid].hi)
            lo = mid + 1;
        else
            return &idt_ident[mid];
    }
    return NULL;
}

/* The tokenizer's codepoint_to_scriptset: ASCII letters are Latin; '_',
 * digits, '@', '?', '!' and anything else outside the tables are of every
 * script. */
static uint64_t
script_set(uint32_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    const struct idt_range *r = ident_range(c);
    return r ? idt_sets[r->set] : IDT_ALL_SCRIPTS;
}

/* The canonical combining class of c (0 for starters). */
static int
combining_class(uint32_t c)
{
    size_t lo = 0, hi = COUNT(idt_ccc);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < idt_ccc[mid].lo)
            hi = mid;
        else if (c > idt_ccc[mid].hi)
            lo = mid + 1;
        else
            return idt_ccc[mid].ccc;
    }
    return 0;
}

#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_SCOUNT 11172u

/* Appends the canonical decomposition of c to out (room for 4 more), returns the new length. */
static size_t
decompose(uint32_t c, uint32_t *out, size_t k)
{
    if (c - HANGUL_S < HANGUL_SCOUNT) {
        uint32_t s = c - HANGUL_S;
        out[k++] = HANGUL_L + s / (21 * 28);
        out[k++] = HANGUL_V + s % (21 * 28) / 28;
        if (s % 28)
            out[k++] = HANGUL_T + s % 28;
        return k;
    }
    size_t lo = 0, hi = COUNT(idt_decomp);
    while (c >= 0x80 && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < idt_decomp[mid].cp) {
            hi = mid;
        } else if (c > idt_decomp[mid].cp) {
            lo = mid + 1;
        } else {
            for (size_t j = 0; j < idt_decomp[mid].len; j++)
                out[k++] = idt_decomp_cps[idt_decomp[mid].at + j];
            return k;
        }
    }
    out[k++] = c;
    return k;
}

/* The code point first and second compose into, or 0 (Hangul by its arithmetic). */
static uint32_t
compose(uint32_t first, uint32_t second)
{
    if (first - HANGUL_L < 19 && second - HANGUL_V < 21)
        return HANGUL_S + ((first - HANGUL_L) * 21 + (second - HANGUL_V)) * 28;
    if (first - HANGUL_S < HANGUL_SCOUNT && (first - HANGUL_S) % 28 == 0 && second - HANGUL_T - 1 < 27)
        return first + (second - HANGUL_T);
    size_t lo = 0, hi = COUNT(idt_compose);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t s2 = idt_compose[mid].second, f = idt_compose[mid].first;
        if (second < s2 || (second == s2 && first < f))
            hi = mid;
        else if (second > s2 || first > f)
            lo = mid + 1;
        else
            return idt_compose[mid].composite;
    }
    return 0;
}

/* The NFC form of the code points of an atom (at most 255) in d (room for
 * 4 * 256), as unicode:characters_to_nfc_list/1 gives it: decompose, order the
 * marks by combining class, compose again (Unicode's algorithm); its length. */
static size_t
to_nfc(const uint32_t *cp, size_t n, uint32_t *d)
{
    uint8_t cc[256 * 4]; /* classes are at most 240 */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k = decompose(cp[i], d, k);
    for (size_t i = 0; i < k; i++)
        cc[i] = (uint8_t)combining_class(d[i]);
    /* canonical order: a stable sort of each run of marks by class */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && cc[j] != 0 && cc[j - 1] > cc[j]; j--) {
            uint32_t t = d[j];
            uint8_t tc = cc[j];
            d[j] = d[j - 1], cc[j] = cc[j - 1];
            d[j - 1] = t, cc[j - 1] = tc;
        }
    /* compose: each code point with the last starter, unless one between of
       class 0 or of a class at least its own blocks it */
    size_t out = 0, starter = 0;
    int have = 0, last = 0;
    for (size_t i = 0; i < k; i++) {
        uint32_t x;
        if (have && (last < cc[i] || (last == 0 && out == starter + 1)) && (x = compose(d[starter], d[i])) != 0) {
            d[starter] = x;
            continue;
        }
        if (cc[i] == 0) {
            starter = out;
            have = 1;
        }
        last = cc[i];
        d[out] = d[i];
        cc[out++] = cc[i];
    }
    return out;
}

/* The tokenizer's highly_restrictive?: every code point shares a script with
 * Latin+Japanese, or every one with Latin+Han+Bopomofo, or with Latin+Korean. */
static int
highly_restrictive(const uint32_t *cp, size_t n)
{
    for (size_t k = 0; k < COUNT(idt_restrictive); k++) {
        size_t i = 0;
        while (i < n && (script_set(cp[i]) & idt_restrictive[k]) != 0)
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

/* Whether inspect leaves the atom (no operator, no alias) bare: Macro's
 * classify_atom after String.Tokenizer.tokenize/1. A lone identifier, all of
 * it: a start ([A-Za-z_], or a Unicode start or upper-case letter; U+00B5
 * stands for U+03BC and counts as a change by NFKC), then ASCII letters,
 * digits, '_', '@' or Unicode continues, and an optional last '?' or '!'.
 * Past ASCII letters, it must be in NFC and its scripts must meet (or be
 * highly restrictive). Bare: what starts upper case or holds '@'; else an
 * identifier that NFC/NFKC left as it was. */
static int
bare_atom(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t cp[256]; /* an atom has at most 255 characters */
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = u[i];
        size_t k = 1;
        if (c >= 0x80 && (k = cnode__utf8_get(u + i, n - i, &c)) == 0)
            return 0;
        if (m == COUNT(cp))
            return 0;
        cp[m++] = c;
        i += k;
    }
    if (m == 0)
        return 0;
    int not_identifier, ascii = 1, at = 0, nfkc = 0;
    uint64_t ss;
    const struct idt_range *r;
    uint32_t h = cp[0];
    if ((h >= 'A' && h <= 'Z') || (h >= 'a' && h <= 'z')) {
        not_identifier = h <= 'Z';
        ss = 1;
    } else if (h == '_') {
        not_identifier = 0;
        ss = IDT_ALL_SCRIPTS;
    } else if ((r = ident_range(h)) != NULL && r->kind != 3) {
        not_identifier = r->kind == 2;
        ss = idt_sets[r->set];
        ascii = 0;
    } else if (h == 0xB5) {
        not_identifier = 0;
        ss = IDT_ALL_SCRIPTS;
        ascii = 0;
        nfkc = 1;
        cp[0] = 0x3BC;
    } else {
        return 0;
    }
    for (size_t i = 1; i < m; i++) {
        uint32_t c = cp[i];
        if (c == '?' || c == '!') {
            if (i + 1 != m)
                return 0;
        } else if (c == '@') {
            at = 1;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            ss &= 1;
        } else if (c == '_' || (c >= '0' && c <= '9')) {
            continue;
        } else if (c < 0x80) {
            return 0;
        } else if ((r = ident_range(c)) != NULL) {
            ss &= idt_sets[r->set];
            ascii = 0;
        } else if (c == 0xB5) {
            ascii = 0;
            nfkc = 1;
            cp[i] = 0x3BC;
        } else {
            return 0;
        }
    }
    if (!ascii) {
        uint32_t nfc[256 * 4];
        size_t k = to_nfc(cp, m, nfc);
        if (k != m || memcmp(nfc, cp, m * sizeof cp[0]) != 0)
            nfkc = 1;
        if (ss == 0 && !highly_restrictive(nfc, k))
            return 0;
    }
    return not_identifier || at || !nfkc;
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
    } else if (bare_atom(s, n) || operator_atom(s, n)) {
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
    if (bare_atom(name, n) || operator_atom(name, n)) {
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
