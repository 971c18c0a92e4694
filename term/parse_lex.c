/* term/parse_lex.c: the parser's words: errors, characters, escapes, strings,
 * atoms and numbers. */
#include "term/text.h"

/* ---- parsing --------------------------------------------------------------------------------------------------- */

int
perr(ps *p, size_t at, const char *fmt, ...)
{
    if (p->failed)
        return -1;
    p->failed = CNODE_EBADMSG;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    term_fail(p->err, CNODE_EBADMSG, "at offset %zu: %s", at, msg);
    return -1;
}

int
oom(ps *p)
{
    if (!p->failed) {
        p->failed = CNODE_ENOMEM;
        term_fail(p->err, CNODE_ENOMEM, "at offset %zu: out of memory", p->pos);
    }
    return -1;
}

int
peek(const ps *p, size_t ahead)
{
    return p->pos + ahead < p->len ? p->s[p->pos + ahead] : -1;
}

void
skip_ws(ps *p)
{
    while (p->pos < p->len) {
        unsigned c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            p->pos++;
        } else if (c == '%') {
            while (p->pos < p->len && p->s[p->pos] != '\n')
                p->pos++;
        } else {
            break;
        }
    }
}

int
put_bytes(ps *p, const void *d, size_t n)
{
    if (n > INT32_MAX || ei_x_append_buf(p->x, d, (int)n) < 0)
        return oom(p);
    return 0;
}

/* One source character (UTF-8) at p->pos. */
static int
get_char(ps *p, uint32_t *c)
{
    size_t k = cnode__utf8_get(p->s + p->pos, p->len - p->pos, c);
    if (!k)
        return perr(p, p->pos, "invalid UTF-8");
    p->pos += k;
    return 0;
}

static int
hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* An escape sequence after its backslash, as erl_scan reads it. */
static int
escape(ps *p, uint32_t *c)
{
    size_t at = p->pos - 1;
    int ch = peek(p, 0);
    if (ch < 0)
        return perr(p, at, "unterminated escape sequence");
    if (ch >= '0' && ch <= '7') {
        uint32_t v = 0;
        for (int i = 0; i < 3 && peek(p, 0) >= '0' && peek(p, 0) <= '7'; i++)
            v = v * 8 + (uint32_t)(p->s[p->pos++] - '0');
        *c = v;
        return 0;
    }
    if (ch == 'x') {
        p->pos++;
        uint32_t v = 0;
        if (peek(p, 0) == '{') {
            int digits = 0;
            p->pos++;
            while (hexval(peek(p, 0)) >= 0) {
                if (v > 0x10FFFF)
                    return perr(p, at, "character code in escape out of range");
                v = v * 16 + (uint32_t)hexval(p->s[p->pos++]);
                digits++;
            }
            if (peek(p, 0) != '}' || digits == 0)
                return perr(p, at, "bad \\x{...} escape");
            p->pos++;
        } else {
            if (hexval(peek(p, 0)) < 0 || hexval(peek(p, 1)) < 0)
                return perr(p, at, "bad \\xHH escape");
            v = (uint32_t)(hexval(peek(p, 0)) * 16 + hexval(peek(p, 1)));
            p->pos += 2;
        }
        if (v > 0x10FFFF)
            return perr(p, at, "character code in escape out of range");
        *c = v;
        return 0;
    }
    if (ch == '^') {
        int n = peek(p, 1);
        if (n < 0 || n > 127)
            return perr(p, at, "bad control escape");
        p->pos += 2;
        *c = n == '?' ? 127 : (uint32_t)n & 31;
        return 0;
    }
    static const char from[] = "nrtvbfesd", to[] = {'\n', '\r', '\t', '\v', '\b', '\f', 27, ' ', 127};
    const char *hit = strchr(from, ch);
    if (hit && ch) {
        p->pos++;
        *c = (unsigned char)to[hit - from];
        return 0;
    }
    return get_char(p, c); /* any other character stands for itself */
}

int
cp_push(ps *p, cpbuf *b, uint32_t c)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 32;
        uint32_t *np = realloc(b->c, nc * sizeof *np);
        if (!np)
            return oom(p);
        b->c = np;
        b->cap = nc;
    }
    b->c[b->n++] = c;
    return 0;
}

/* Quoted text up to the closing q (p->pos just after the opening one). */
static int
quoted(ps *p, char q, cpbuf *b, const char *what)
{
    size_t at = p->pos - 1;
    for (;;) {
        int ch = peek(p, 0);
        uint32_t c;
        if (ch < 0)
            return perr(p, p->len, "unterminated %s opened at offset %zu", what, at);
        if (ch == q) {
            p->pos++;
            return 0;
        }
        if (ch == '\\') {
            p->pos++;
            if (escape(p, &c))
                return -1;
        } else if (get_char(p, &c)) {
            return -1;
        }
        if (cp_push(p, b, c))
            return -1;
    }
}

/* "..." "..." (adjacent strings concatenate, as in Erlang). */
int
strings(ps *p, cpbuf *b)
{
    do {
        p->pos++;
        if (quoted(p, '"', b, "string"))
            return -1;
        skip_ws(p);
    } while (peek(p, 0) == '"');
    return 0;
}

int
put_atom_text(ps *p, size_t at, const unsigned char *u, size_t n, size_t chars)
{
    if (chars > 255)
        return perr(p, at, "atom longer than 255 characters");
    if (ei_x_encode_atom_len_as(p->x, (const char *)u, (int)n, ERLANG_UTF8, ERLANG_UTF8) < 0)
        return perr(p, at, "atom not encodable");
    return 0;
}

int
bare_atom(ps *p)
{
    size_t at = p->pos, chars = 0;
    while (p->pos < p->len) {
        uint32_t c;
        size_t k = cnode__utf8_get(p->s + p->pos, p->len - p->pos, &c);
        if (!k || !io_name_char(c))
            break;
        p->pos += k;
        chars++;
    }
    atomtxt a = {.n = 0};
    for (size_t i = at; i < p->pos && i - at < 8; i++)
        a.cp[a.n++] = p->s[i];
    if (p->pos - at < 8 && is_reserved(&a))
        return perr(p, at, "'%.*s' is a reserved word; quote it to make an atom", (int)(p->pos - at), (const char *)p->s + at);
    return put_atom_text(p, at, p->s + at, p->pos - at, chars);
}

int
quoted_atom(ps *p)
{
    size_t at = p->pos;
    cpbuf b = {0};
    p->pos++;
    int res = quoted(p, '\'', &b, "quoted atom");
    if (res == 0 && b.n > 255)
        res = perr(p, at, "atom longer than 255 characters");
    unsigned char u[255 * 4];
    size_t n = 0;
    for (size_t i = 0; res == 0 && i < b.n; i++) {
        if (b.c[i] >= 0xD800 && b.c[i] <= 0xDFFF)
            res = perr(p, at, "atom with a surrogate code point");
        else
            n += cnode__utf8_put(u + n, b.c[i]);
    }
    if (res == 0)
        res = put_atom_text(p, at, u, n, b.n);
    free(b.c);
    return res;
}

/* Integer encoding as term_to_binary writes it; mag little-endian. */
int
put_int_mag(ps *p, int neg, const unsigned char *mag, size_t n)
{
    while (n > 0 && mag[n - 1] == 0)
        n--;
    if (n == 0)
        neg = 0;
    if (n <= 4) {
        uint32_t m = 0;
        for (size_t i = n; i-- > 0;)
            m = m << 8 | mag[i];
        unsigned char t[5];
        if (!neg && m <= 255) {
            t[0] = T_SMALL_INT, t[1] = (unsigned char)m;
            return put_bytes(p, t, 2);
        }
        if ((!neg && m <= INT32_MAX) || (neg && m <= (uint32_t)INT32_MAX + 1)) {
            uint32_t u = neg ? (uint32_t)(0u - m) : m;
            t[0] = T_INT, t[1] = (unsigned char)(u >> 24), t[2] = (unsigned char)(u >> 16), t[3] = (unsigned char)(u >> 8),
            t[4] = (unsigned char)u;
            return put_bytes(p, t, 5);
        }
    }
    unsigned char h[6];
    size_t hl;
    if (n <= 255) {
        h[0] = T_SMALL_BIG, h[1] = (unsigned char)n, h[2] = (unsigned char)neg, hl = 3;
    } else {
        h[0] = T_LARGE_BIG, h[1] = (unsigned char)(n >> 24), h[2] = (unsigned char)(n >> 16), h[3] = (unsigned char)(n >> 8),
        h[4] = (unsigned char)n, h[5] = (unsigned char)neg, hl = 6;
    }
    if (put_bytes(p, h, hl))
        return -1;
    return put_bytes(p, mag, n);
}

int
put_int64(ps *p, int64_t v)
{
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    unsigned char mag[8];
    for (int i = 0; i < 8; i++)
        mag[i] = (unsigned char)(m >> (8 * i));
    return put_int_mag(p, v < 0, mag, 8);
}

static int
big_muladd(ps *p, big *b, uint32_t mul, uint32_t add)
{
    uint64_t carry = add;
    for (size_t i = 0; i < b->n; i++) {
        uint64_t t = (uint64_t)b->l[i] * mul + carry;
        b->l[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry) {
        if (b->n == b->cap) {
            size_t nc = b->cap ? b->cap * 2 : 4;
            uint32_t *np = realloc(b->l, nc * sizeof *np);
            if (!np)
                return oom(p);
            b->l = np;
            b->cap = nc;
        }
        b->l[b->n++] = (uint32_t)carry;
    }
    return 0;
}

int
digit_in(int c, unsigned base)
{
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : c >= 'A' && c <= 'Z' ? c - 'A' + 10 : -1;
    return v >= 0 && (unsigned)v < base ? v : -1;
}

/* Digits (with single '_' between digits) in base into b. */
int
digits(ps *p, unsigned base, big *b)
{
    size_t at = p->pos;
    uint32_t chunk = 0, mul = 1;
    if (digit_in(peek(p, 0), base) < 0)
        return perr(p, at, "expected a digit in base %u", base);
    for (;;) {
        int d = digit_in(peek(p, 0), base);
        if (d < 0) {
            if (peek(p, 0) == '_' && digit_in(peek(p, 1), base) >= 0) {
                p->pos++;
                continue;
            }
            break;
        }
        if (p->pos - at > MAX_INT_CHARS)
            return perr(p, at, "integer literal longer than %d characters", MAX_INT_CHARS);
        p->pos++;
        chunk = chunk * base + (uint32_t)d;
        mul *= base;
        if (mul > UINT32_MAX / 36) {
            if (big_muladd(p, b, mul, chunk))
                return -1;
            chunk = 0, mul = 1;
        }
    }
    return mul > 1 ? big_muladd(p, b, mul, chunk) : 0;
}

static int
put_big(ps *p, int neg, const big *b)
{
    size_t n = b->n * 4;
    unsigned char *mag = malloc(n ? n : 1);
    if (!mag)
        return oom(p);
    for (size_t i = 0; i < n; i++)
        mag[i] = (unsigned char)(b->l[i / 4] >> (8 * (i % 4)));
    int res = put_int_mag(p, neg, mag, n);
    free(mag);
    return res;
}

/* int64 value of a magnitude, if it fits. */
int
big_small(const big *b, int neg, int64_t *v)
{
    size_t n = b->n;
    while (n > 0 && b->l[n - 1] == 0)
        n--;
    if (n > 2)
        return 0;
    uint64_t m = n == 0 ? 0 : n == 1 ? b->l[0] : (uint64_t)b->l[1] << 32 | b->l[0];
    if (m <= (uint64_t)INT64_MAX)
        *v = neg ? -(int64_t)m : (int64_t)m;
    else if (neg && m == (uint64_t)INT64_MAX + 1)
        *v = INT64_MIN;
    else
        return 0;
    return 1;
}

/* A number (p->pos on its first digit). Integers go to *b (caller frees
 * b->l); a float sets *is_float and *f. */
static int
number(ps *p, big *b, int *is_float, double *f)
{
    size_t at = p->pos;
    *is_float = 0;
    if (digits(p, 10, b))
        return -1;
    if (peek(p, 0) == '#') {
        int64_t base;
        if (!big_small(b, 0, &base) || base < 2 || base > 36)
            return perr(p, at, "base must be 2..36");
        p->pos++;
        b->n = 0;
        return digits(p, (unsigned)base, b);
    }
    if (peek(p, 0) != '.' || peek(p, 1) < '0' || peek(p, 1) > '9')
        return 0;
    p->pos++;
    big ignore = {0};
    int res = digits(p, 10, &ignore);
    if (res == 0 && (peek(p, 0) == 'e' || peek(p, 0) == 'E')) {
        p->pos++;
        if (peek(p, 0) == '+' || peek(p, 0) == '-')
            p->pos++;
        res = digits(p, 10, &ignore);
    }
    free(ignore.l);
    if (res)
        return -1;
    if (p->pos - at > MAX_FLOAT_CHARS)
        return perr(p, at, "float literal too long");
    char t[MAX_FLOAT_CHARS + 1];
    size_t n = 0;
    for (size_t i = at; i < p->pos; i++)
        if (p->s[i] != '_')
            t[n++] = (char)p->s[i];
    t[n] = 0;
    *f = tt_strtod(t);
    if (!isfinite(*f))
        return perr(p, at, "float out of range");
    *is_float = 1;
    return 0;
}

/* An integer or float, with an optional sign, or a $c character. For
 * binaries (int_only) floats are refused and the value must fit int64. */
int
numeric(ps *p, int int_only, int64_t *ival)
{
    size_t at = p->pos;
    int neg = 0;
    if (peek(p, 0) == '-' || peek(p, 0) == '+') {
        neg = peek(p, 0) == '-';
        p->pos++;
        skip_ws(p);
        if (peek(p, 0) != '$' && (peek(p, 0) < '0' || peek(p, 0) > '9'))
            return perr(p, at, "expected a number after the sign");
    }
    if (peek(p, 0) == '$') {
        uint32_t c;
        p->pos++;
        if (peek(p, 0) < 0)
            return perr(p, at, "unterminated character literal");
        if (peek(p, 0) == '\\') {
            p->pos++;
            if (escape(p, &c))
                return -1;
        } else if (get_char(p, &c)) {
            return -1;
        }
        int64_t v = neg ? -(int64_t)c : (int64_t)c;
        if (int_only) {
            *ival = v;
            return 0;
        }
        return put_int64(p, v);
    }
    big b = {0};
    int is_float;
    double f;
    int res = number(p, &b, &is_float, &f);
    if (res == 0 && is_float) {
        if (int_only)
            res = perr(p, at, "floats are not supported in binaries");
        else if (ei_x_encode_double(p->x, neg ? -f : f) < 0)
            res = oom(p);
    } else if (res == 0 && int_only) {
        if (!big_small(&b, neg, ival))
            res = perr(p, at, "binary segment value too large");
    } else if (res == 0) {
        res = put_big(p, neg, &b);
    }
    free(b.l);
    return res;
}
