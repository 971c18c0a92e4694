/* term/format.c: cnode_term_format's holes. */
#include "term/text.h"

int
hole(ps *p)
{
    size_t at = p->pos;
    int d = peek(p, 1);
    if (!p->ap)
        return perr(p, at, "unexpected character '~'");
    p->pos += d < 0 ? 1 : 2;
    switch (d) {
    case 'i':
        return put_int64(p, (int64_t)va_arg(*p->ap, long));
    case 'l':
        return put_int64(p, (int64_t)va_arg(*p->ap, long long));
    case 'u': {
        uint64_t m = (uint64_t)va_arg(*p->ap, unsigned long);
        unsigned char mag[8];
        for (int i = 0; i < 8; i++)
            mag[i] = (unsigned char)(m >> (8 * i));
        return put_int_mag(p, 0, mag, 8);
    }
    case 'f': {
        double f = va_arg(*p->ap, double);
        if (!isfinite(f))
            return perr(p, at, "~f: NaN and infinities are not Erlang floats");
        return ei_x_encode_double(p->x, f) < 0 ? oom(p) : 0;
    }
    case 'a': {
        const char *a = va_arg(*p->ap, const char *);
        cpbuf b = {0};
        if (!a || utf8_cps(p, a, &b) != 0) {
            free(b.c);
            return p->failed ? -1 : perr(p, at, "~a: not an atom name (NULL or invalid UTF-8)");
        }
        size_t chars = b.n;
        free(b.c);
        return put_atom_text(p, at, (const unsigned char *)a, strlen(a), chars);
    }
    case 's': {
        const char *t = va_arg(*p->ap, const char *);
        cpbuf b = {0};
        if (!t || utf8_cps(p, t, &b) != 0) {
            free(b.c);
            return p->failed ? -1 : perr(p, at, "~s: not a string (NULL or invalid UTF-8)");
        }
        return put_codepoints(p, &b, 0);
    }
    case 'b': {
        const char *t = va_arg(*p->ap, const char *);
        if (!t)
            return perr(p, at, "~b: NULL");
        return ei_x_encode_binary(p->x, t, (long)strlen(t)) < 0 ? oom(p) : 0;
    }
    case 'B': {
        const void *b = va_arg(*p->ap, const void *);
        size_t n = va_arg(*p->ap, size_t);
        if ((!b && n) || n > INT32_MAX)
            return perr(p, at, "~B: NULL data or a size above 2 GiB");
        return ei_x_encode_binary(p->x, n ? b : "", (long)n) < 0 ? oom(p) : 0;
    }
    case 'p': {
        const erlang_pid *pid = va_arg(*p->ap, const erlang_pid *);
        if (!pid || !pid->node[0])
            return perr(p, at, "~p: NULL or a pid without a node");
        return ei_x_encode_pid(p->x, pid) < 0 ? oom(p) : 0;
    }
    case 'r': {
        const erlang_ref *ref = va_arg(*p->ap, const erlang_ref *);
        if (!ref || !ref->node[0] || ref->len < 1 || ref->len > 5)
            return perr(p, at, "~r: NULL or a malformed reference");
        return ei_x_encode_ref(p->x, ref) < 0 ? oom(p) : 0;
    }
    case 't': {
        const char *b = va_arg(*p->ap, const char *);
        size_t n = va_arg(*p->ap, size_t);
        if (b && n && (unsigned char)b[0] == 131)
            b++, n--;
        if (!b || !n || cnode__term_extent(b, n, NULL, NULL) != (ptrdiff_t)n || n > INT32_MAX)
            return perr(p, at, "~t: not exactly one well-formed encoded term");
        return ei_x_append_buf(p->x, b, (int)n) < 0 ? oom(p) : 0;
    }
    default:
        return perr(p, at, "unknown hole '~%c' (one of ~i ~u ~l ~f ~a ~s ~b ~B ~p ~r ~t)", d < 0 ? ' ' : d);
    }
}

int
cnode_term_format(ei_x_buff *out, cnode_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ps p = {(const unsigned char *)fmt, fmt ? strlen(fmt) : 0, 0, out, err, 0, 0, &ap};
    int rc = parse_all(&p);
    va_end(ap);
    return rc;
}
