/* term/parse.c: cnode_term_parse: lists, tuples, maps, binaries, strings, and the
 * term as a whole. */
#include "term/text.h"

static int value(ps *p);

/* Patch a 4-byte big-endian count at x->buff[at]. */
static void
patch32(ps *p, int at, uint32_t n)
{
    unsigned char *q = (unsigned char *)p->x->buff + at;
    q[0] = (unsigned char)(n >> 24), q[1] = (unsigned char)(n >> 16), q[2] = (unsigned char)(n >> 8), q[3] = (unsigned char)n;
}

static int
enter(ps *p)
{
    if (++p->depth > PARSE_MAX_DEPTH)
        return perr(p, p->pos, "nested deeper than %d levels", PARSE_MAX_DEPTH);
    p->pos++;
    skip_ws(p);
    return 0;
}

static int
list(ps *p)
{
    size_t at = p->pos;
    if (enter(p))
        return -1;
    if (peek(p, 0) == ']') {
        p->pos++;
        p->depth--;
        return ei_x_encode_empty_list(p->x) < 0 ? oom(p) : 0;
    }
    int h = p->x->index;
    static const unsigned char hdr[5] = {T_LIST, 0, 0, 0, 0};
    if (put_bytes(p, hdr, 5))
        return -1;
    uint32_t n = 0;
    int bytes_only = 1, tail = 0;
    for (;;) {
        int e = p->x->index;
        if (value(p))
            return -1;
        bytes_only &= p->x->buff[e] == (char)T_SMALL_INT;
        if (++n == UINT32_MAX)
            return perr(p, at, "list too long");
        skip_ws(p);
        int ch = peek(p, 0);
        if (ch == '|') {
            p->pos++;
            skip_ws(p);
            if (value(p))
                return -1;
            skip_ws(p);
            tail = 1;
            ch = peek(p, 0);
            if (ch != ']')
                return ch < 0 ? perr(p, p->len, "unterminated list opened at offset %zu", at)
                              : perr(p, p->pos, "expected ']' after the tail of the list");
        }
        if (ch == ']') {
            p->pos++;
            break;
        }
        if (ch < 0)
            return perr(p, p->len, "unterminated list opened at offset %zu", at);
        if (ch != ',')
            return perr(p, p->pos, "expected ',', '|' or ']' in the list");
        p->pos++;
        skip_ws(p);
    }
    if (!tail && ei_x_encode_empty_list(p->x) < 0)
        return oom(p);
    patch32(p, h + 1, n);
    if (!tail && bytes_only && n <= 0xFFFF) { /* a list of bytes is a STRING_EXT, as term_to_binary writes it */
        unsigned char *q = (unsigned char *)p->x->buff + h;
        q[0] = T_STRING, q[1] = (unsigned char)(n >> 8), q[2] = (unsigned char)n;
        for (uint32_t i = 0; i < n; i++)
            q[3 + i] = q[5 + 2 * i + 1];
        p->x->index = h + 3 + (int)n;
    }
    p->depth--;
    return 0;
}

static int
tuple(ps *p)
{
    size_t at = p->pos;
    if (enter(p))
        return -1;
    int h = p->x->index;
    static const unsigned char hdr[5] = {T_LARGE_TUPLE, 0, 0, 0, 0};
    if (put_bytes(p, hdr, 5))
        return -1;
    uint32_t n = 0;
    if (peek(p, 0) == '}') {
        p->pos++;
    } else {
        for (;;) {
            if (value(p))
                return -1;
            n++;
            skip_ws(p);
            int ch = peek(p, 0);
            if (ch == '}') {
                p->pos++;
                break;
            }
            if (ch < 0)
                return perr(p, p->len, "unterminated tuple opened at offset %zu", at);
            if (ch != ',')
                return perr(p, p->pos, "expected ',' or '}' in the tuple");
            p->pos++;
            skip_ws(p);
        }
    }
    if (n <= 255) { /* SMALL_TUPLE_EXT: drop three header bytes */
        char *q = p->x->buff + h;
        q[0] = (char)T_SMALL_TUPLE;
        q[1] = (char)n;
        memmove(q + 2, q + 5, (size_t)(p->x->index - h - 5));
        p->x->index -= 3;
    } else {
        patch32(p, h + 1, n);
    }
    p->depth--;
    return 0;
}

/* Two equal keys make no map; BEAM's parse keeps the last, we refuse. */
static int
map_check(ps *p, mpair *mp, size_t n)
{
    if (n < 2)
        return 0;
    pair *keys = malloc(n * sizeof *keys);
    if (!keys)
        return oom(p);
    for (size_t i = 0; i < n; i++)
        keys[i].k = (size_t)mp[i].k, keys[i].v = i;
    const unsigned char *b = (const unsigned char *)p->x->buff;
    size_t len = (size_t)p->x->index;
    int res = sort_pairs(b, len, keys, n, 0) ? oom(p) : 0;
    for (size_t i = 1; i < n && res == 0; i++)
        if (cmp_at(b, len, keys[i - 1].k, keys[i].k, 0) == 0)
            res = perr(p, mp[keys[i].v > keys[i - 1].v ? keys[i].v : keys[i - 1].v].at, "duplicate map key");
    free(keys);
    return res;
}

/* Above 32 keys the printer shows pairs in the reverse of their encoding
 * (as BEAM does for its hash maps), so write them reversed: print(parse(T))
 * is T again. */
static int
map_reverse(ps *p, mpair *mp, size_t n, int body)
{
    size_t len = (size_t)(p->x->index - body);
    char *tmp = malloc(len ? len : 1);
    if (!tmp)
        return oom(p);
    size_t o = 0;
    for (size_t i = n; i-- > 0;) {
        size_t l = (size_t)(mp[i].end - mp[i].k);
        memcpy(tmp + o, p->x->buff + mp[i].k, l);
        o += l;
    }
    memcpy(p->x->buff + body, tmp, len);
    free(tmp);
    return 0;
}

static int
map(ps *p)
{
    size_t at = p->pos;
    p->pos++; /* '#' */
    if (enter(p))
        return -1;
    int h = p->x->index;
    static const unsigned char hdr[5] = {T_MAP, 0, 0, 0, 0};
    if (put_bytes(p, hdr, 5))
        return -1;
    mpair *mp = NULL;
    size_t n = 0, cap = 0;
    int res = 0;
    if (peek(p, 0) == '}') {
        p->pos++;
    } else {
        for (;;) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                mpair *np = realloc(mp, cap * sizeof *np);
                if (!np) {
                    res = oom(p);
                    break;
                }
                mp = np;
            }
            mp[n].at = p->pos;
            mp[n].k = p->x->index;
            if ((res = value(p)))
                break;
            skip_ws(p);
            if (peek(p, 0) != '=' || peek(p, 1) != '>') {
                res = peek(p, 0) < 0 ? perr(p, p->len, "unterminated map opened at offset %zu", at)
                                     : perr(p, p->pos, "expected '=>' in the map");
                break;
            }
            p->pos += 2;
            skip_ws(p);
            mp[n].v = p->x->index;
            if ((res = value(p)))
                break;
            mp[n++].end = p->x->index;
            skip_ws(p);
            int ch = peek(p, 0);
            if (ch == '}') {
                p->pos++;
                break;
            }
            if (ch != ',') {
                res = ch < 0 ? perr(p, p->len, "unterminated map opened at offset %zu", at)
                             : perr(p, p->pos, "expected ',' or '}' in the map");
                break;
            }
            p->pos++;
            skip_ws(p);
        }
    }
    if (res == 0)
        res = map_check(p, mp, n);
    if (res == 0 && n > FLATMAP_MAX)
        res = map_reverse(p, mp, n, h + 5);
    if (res == 0)
        patch32(p, h + 1, (uint32_t)n);
    free(mp);
    p->depth--;
    return res;
}

static int
bits_put(ps *p, bitbuf *bb, int64_t v, size_t size)
{
    if (bb->bits + size > (size_t)INT32_MAX)
        return perr(p, p->pos, "binary too large");
    size_t need_bytes = (bb->bits + size + 7) / 8;
    if (need_bytes > bb->cap) {
        size_t nc = bb->cap ? bb->cap : 64;
        while (nc < need_bytes)
            nc *= 2;
        unsigned char *np = realloc(bb->b, nc);
        if (!np)
            return oom(p);
        memset(np + bb->cap, 0, nc - bb->cap);
        bb->b = np;
        bb->cap = nc;
    }
    for (size_t i = size; i-- > 0;) {
        unsigned bit = i < 64 ? (unsigned)((uint64_t)v >> i & 1) : v < 0;
        if (bit)
            bb->b[bb->bits / 8] |= (unsigned char)(0x80 >> (bb->bits % 8));
        bb->bits++;
    }
    return 0;
}

/* One segment: "text" ["/utf8"] or Value [":" Size]. */
static int
segment(ps *p, bitbuf *bb, size_t open)
{
    size_t at = p->pos;
    if (peek(p, 0) == '"') {
        cpbuf s = {0};
        int res = strings(p, &s), utf8 = 0;
        if (res == 0 && peek(p, 0) == '/') {
            p->pos++;
            skip_ws(p);
            if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "utf8", 4) == 0 && digit_in(peek(p, 4), 36) < 0)
                p->pos += 4, utf8 = 1;
            else
                res = perr(p, p->pos, "only /utf8 is supported after a string in a binary");
        }
        for (size_t i = 0; res == 0 && i < s.n; i++) {
            unsigned char u[4];
            size_t k = utf8 ? cnode__utf8_put(u, s.c[i]) : (u[0] = (unsigned char)s.c[i], 1);
            for (size_t j = 0; j < k && res == 0; j++)
                res = bits_put(p, bb, u[j], 8);
        }
        free(s.c);
        return res;
    }
    int ch = peek(p, 0);
    if (ch != '-' && ch != '+' && ch != '$' && (ch < '0' || ch > '9'))
        return ch < 0 ? perr(p, p->len, "unterminated binary opened at offset %zu", open)
                      : perr(p, at, "expected an integer or a string in the binary");
    int64_t v;
    if (numeric(p, 1, &v))
        return -1;
    skip_ws(p);
    size_t size = 8;
    if (peek(p, 0) == ':') {
        p->pos++;
        skip_ws(p);
        big b = {0};
        int64_t sz = -1;
        int res = digits(p, 10, &b);
        if (res == 0 && (!big_small(&b, 0, &sz) || sz > MAX_SEGMENT_BITS))
            res = perr(p, at, "segment size above %d bits", MAX_SEGMENT_BITS);
        free(b.l);
        if (res)
            return -1;
        size = (size_t)sz;
    }
    return bits_put(p, bb, v, size);
}

static int
binary(ps *p)
{
    size_t at = p->pos;
    p->pos++; /* first '<' */
    if (enter(p))
        return -1;
    bitbuf bb = {0};
    int res = 0;
    if (peek(p, 0) == '>' && peek(p, 1) == '>') {
        p->pos += 2;
    } else {
        for (;;) {
            if ((res = segment(p, &bb, at)))
                break;
            skip_ws(p);
            int ch = peek(p, 0);
            if (ch == '>' && peek(p, 1) == '>') {
                p->pos += 2;
                break;
            }
            if (ch != ',') {
                res = ch < 0 ? perr(p, p->len, "unterminated binary opened at offset %zu", at)
                             : perr(p, p->pos, "expected ',' or '>>' in the binary");
                break;
            }
            p->pos++;
            skip_ws(p);
        }
    }
    if (res == 0) {
        static const char none[1];
        const char *d = bb.b ? (const char *)bb.b : none;
        int r = bb.bits % 8 ? ei_x_encode_bitstring(p->x, d, 0, bb.bits) : ei_x_encode_binary(p->x, d, (int)(bb.bits / 8));
        if (r < 0)
            res = oom(p);
    }
    free(bb.b);
    p->depth--;
    return res;
}

static int
string_term(ps *p)
{
    cpbuf s = {0};
    return put_codepoints(p, &s, strings(p, &s));
}

/* A string's code points as Erlang encodes the list; frees s->c. */
int
put_codepoints(ps *p, cpbuf *sp, int res)
{
    cpbuf s = *sp;
    int latin1 = 1;
    for (size_t i = 0; i < s.n; i++)
        latin1 &= s.c[i] <= 255;
    if (res == 0 && latin1) {
        unsigned char *bytes = malloc(s.n ? s.n : 1);
        if (!bytes || s.n > INT32_MAX) {
            res = oom(p);
        } else {
            for (size_t i = 0; i < s.n; i++)
                bytes[i] = (unsigned char)s.c[i];
            if (ei_x_encode_string_len(p->x, (const char *)bytes, (int)s.n) < 0)
                res = oom(p);
        }
        free(bytes);
    } else if (res == 0) {
        if (s.n > INT32_MAX || ei_x_encode_list_header(p->x, (long)s.n) < 0)
            res = oom(p);
        for (size_t i = 0; i < s.n && res == 0; i++)
            res = put_int64(p, s.c[i]);
        if (res == 0 && ei_x_encode_empty_list(p->x) < 0)
            res = oom(p);
    }
    free(s.c);
    return res;
}

/* UTF-8 text as code points; 0, or -1 if it is not valid UTF-8. */
int
utf8_cps(ps *p, const char *text, cpbuf *out)
{
    const unsigned char *u = (const unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = cnode__utf8_get(u + i, n - i, &c);
        if (!k || cp_push(p, out, c) != 0)
            return -1;
        i += k;
    }
    return 0;
}

/* A hole of cnode_term_format at p->pos: "~X", filled from the next argument. */
static int
value(ps *p)
{
    int ch = peek(p, 0);
    if (ch < 0)
        return perr(p, p->pos, "unexpected end of text, expected a term");
    if (ch == '~')
        return hole(p);
    if ((ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || ch == '$')
        return numeric(p, 0, NULL);
    switch (ch) {
    case '\'':
        return quoted_atom(p);
    case '"':
        return string_term(p);
    case '[':
        return list(p);
    case '{':
        return tuple(p);
    case '#':
        if (peek(p, 1) == '{')
            return map(p);
        break;
    case '<':
        if (peek(p, 1) == '<')
            return binary(p);
        break;
    default:
        break;
    }
    uint32_t c;
    size_t k = cnode__utf8_get(p->s + p->pos, p->len - p->pos, &c);
    if (!k)
        return perr(p, p->pos, "invalid UTF-8");
    if (io_lower(c))
        return bare_atom(p);
    if ((c >= 'A' && c <= 'Z') || c == '_' || (c >= 0xC0 && c <= 0xDE && c != 0xD7))
        return perr(p, p->pos, "variables are not terms (quote the atom: '%.*s')", (int)k, (const char *)p->s + p->pos);
    if (c >= 0x21 && c <= 0x7E)
        return perr(p, p->pos, "unexpected character '%c'", (char)c);
    return perr(p, p->pos, "unexpected character U+%04X", (unsigned)c);
}

int
cnode_term_parse(const char *text, ei_x_buff *out, cnode_error *err)
{
    ps p = {(const unsigned char *)text, text ? strlen(text) : 0, 0, out, err, 0, 0, NULL};
    return parse_all(&p);
}

int
parse_all(ps *p0)
{
    ps p = *p0;
    const char *text = (const char *)p.s;
    ei_x_buff *out = p.x;
    if (!text || !out || !out->buff)
        return term_fail(p.err, CNODE_EINVAL, "no text or no output buffer");
    int start = out->index;
    skip_ws(&p);
    if (value(&p) == 0) {
        skip_ws(&p);
        if (peek(&p, 0) == '.') {
            p.pos++;
            skip_ws(&p);
        }
        if (p.pos != p.len)
            perr(&p, p.pos, "unexpected text after the term");
    }
    if (p.failed) {
        out->index = start;
        return p.failed;
    }
    return 0;
}

int
term_fail(cnode_error *err, int code, const char *fmt, ...)
{
    if (err) {
        cnode_error_clear(err);
        err->code = code;
        err->arity = -1;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}
