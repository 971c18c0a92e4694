/* term/text_out.c: the text the term printer writes: a growing string, and floats as
 * float_to_list(F, [short]) writes them. */
#include "term/text.h"

/* ---- output string --------------------------------------------------------------------------------------------- */

void
sb_put(sbuf *s, const void *d, size_t n)
{
    if (s->oom)
        return;
    if (s->cap - s->len <= n) {
        size_t nc = s->cap ? s->cap : 64;
        while (nc - s->len <= n) {
            if (nc > SIZE_MAX / 2) {
                s->oom = 1;
                return;
            }
            nc *= 2;
        }
        char *np = realloc(s->p, nc);
        if (!np) {
            s->oom = 1;
            return;
        }
        s->p = np;
        s->cap = nc;
    }
    memcpy(s->p + s->len, d, n);
    s->len += n;
}

void
sb_c(sbuf *s, char c)
{
    sb_put(s, &c, 1);
}

void
sb_s(sbuf *s, const char *z)
{
    sb_put(s, z, strlen(z));
}

/* A character of io_lib's output (a code point) as UTF-8. */
void
sb_cp(sbuf *s, uint32_t c)
{
    unsigned char b[4];
    sb_put(s, b, cnode__utf8_put(b, c));
}

void
sb_u64(sbuf *s, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    sb_put(s, t, (size_t)n);
}

void
sb_i64(sbuf *s, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", (long long)v);
    sb_put(s, t, (size_t)n);
}

/* ---- floats ---------------------------------------------------------------------------------------------------- */

/* strtod for text whose radix character is '.' (digits, '.', 'e', sign only):
 * strtod reads the locale's radix, so when it stops at the '.', read again with
 * ',' in its place, as BEAM does; no locale object, no global. */
double
tt_strtod(const char *s)
{
    char t[MAX_FLOAT_CHARS + 1], *end;
    size_t n = strnlen(s, MAX_FLOAT_CHARS);
    memcpy(t, s, n);
    t[n] = 0;
    double d = strtod(t, &end);
    if (*end == '.') {
        *end = ',';
        d = strtod(t, &end);
    }
    return d;
}

static int
reads_back(uint64_t m, int e10, double a)
{
    char t[48];
    snprintf(t, sizeof t, "%llue%d", (unsigned long long)m, e10);
    return strtod(t, NULL) == a; /* no radix character in t */
}

/* The shortest m * 10^e10 that reads back as a (finite, > 0) and, among
 * those, the nearest: the digits Ryu gives float_to_list(F, [short]).
 * %.*e gives the nearest p-digit decimal; at a power of two the interval
 * that reads back is lopsided, so its neighbours are tried too. */
static void
shortest_digits(double a, uint64_t *mant, int *exp10)
{
    char t[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*e", p - 1, a);
        uint64_t d = 0;
        const char *q = t;
        for (; *q && *q != 'e'; q++) /* the radix character is skipped, whatever the locale */
            if (*q >= '0' && *q <= '9')
                d = d * 10 + (uint64_t)(*q - '0');
        int e10 = (*q == 'e' ? atoi(q + 1) : 0) - (p - 1);
        uint64_t cand[3] = {d, d + 1, d - 1};
        for (int i = 0; i < (d > 0 ? 3 : 2); i++) {
            if (reads_back(cand[i], e10, a)) {
                uint64_t m = cand[i];
                while (m != 0 && m % 10 == 0) {
                    m /= 10;
                    e10++;
                }
                *mant = m;
                *exp10 = e10;
                return;
            }
        }
    }
    *mant = 0; /* not reached: 17 digits always read back */
    *exp10 = 0;
}

/* float_to_list(F, [short]) of OTP 25: Ryu's digits, fixed notation when it
 * is no longer than scientific (erts/emulator/ryu/to_chars.h). */
void
put_float(sbuf *o, double v)
{
    if (signbit(v))
        sb_c(o, '-');
    double a = fabs(v);
    if (a == 0) {
        sb_s(o, "0.0");
        return;
    }
    uint64_t m;
    int re;
    shortest_digits(a, &m, &re);
    char dg[24];
    int ol = snprintf(dg, sizeof dg, "%llu", (unsigned long long)m);
    int se = re + ol - 1;
    int lower = -(ol + 2), upper = 1;
    if (ol == 1)
        lower = -4, upper = 2;
    else if (se >= 10)
        upper = 2;
    int fixed = lower <= re && re <= upper;
    if (fixed && ((m >= (1ULL << 53) && re == 0) || (m > (1ULL << 52) / 5 && re == 1) || (m > (1ULL << 51) / 25 && re == 2)))
        fixed = 0;
    if (fixed) {
        int whole = ol + re;
        if (re >= 0) {
            sb_put(o, dg, (size_t)ol);
            for (int i = 0; i < re; i++)
                sb_c(o, '0');
            sb_s(o, ".0");
        } else if (whole > 0) {
            sb_put(o, dg, (size_t)whole);
            sb_c(o, '.');
            sb_put(o, dg + whole, (size_t)(ol - whole));
        } else {
            sb_s(o, "0.");
            for (int i = 0; i < -whole; i++)
                sb_c(o, '0');
            sb_put(o, dg, (size_t)ol);
        }
        return;
    }
    sb_c(o, dg[0]);
    sb_c(o, '.');
    if (ol > 1)
        sb_put(o, dg + 1, (size_t)(ol - 1));
    else
        sb_c(o, '0');
    sb_c(o, 'e');
    sb_i64(o, se);
}
