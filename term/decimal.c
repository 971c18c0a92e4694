/* term/decimal.c: a bignum's decimal text for both printers, in less than
 * quadratic time. The binary limbs are split in halves, each half converted
 * on its own, and the results joined in base 10^9 as dec(hi) * dec(2^(32m)) +
 * dec(lo), with Karatsuba multiplication; no division but by 10^9 in the
 * small base case. */
#include "term/text.h"

#define BASE 1000000000u
#define SMALL_LIMBS 48 /* binary limbs converted by repeated division */
#define KARATSUBA 40   /* decimal limbs multiplied the schoolbook way */

typedef struct {
    uint32_t *d; /* base 10^9, least significant first */
    size_t n;
} dnum;

/* r[0, na + nb) = a * b; r zeroed by the caller. */
static void
mul_school(uint32_t *r, const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    for (size_t i = 0; i < na; i++) {
        uint64_t carry = 0;
        for (size_t j = 0; j < nb; j++) {
            uint64_t cur = r[i + j] + (uint64_t)a[i] * b[j] + carry;
            r[i + j] = (uint32_t)(cur % BASE);
            carry = cur / BASE;
        }
        for (size_t k = i + nb; carry; k++) {
            uint64_t cur = r[k] + carry;
            r[k] = (uint32_t)(cur % BASE);
            carry = cur / BASE;
        }
    }
}

/* r[0, nr) += a[0, na), na <= nr; the carry out of r. */
static uint32_t
add_to(uint32_t *r, size_t nr, const uint32_t *a, size_t na)
{
    uint32_t carry = 0;
    for (size_t i = 0; i < nr && (i < na || carry); i++) {
        uint32_t v = r[i] + carry + (i < na ? a[i] : 0);
        carry = v >= BASE;
        r[i] = carry ? v - BASE : v;
    }
    return carry;
}

/* r[0, nr) -= a[0, na), r >= a. */
static void
sub_from(uint32_t *r, size_t nr, const uint32_t *a, size_t na)
{
    uint32_t borrow = 0;
    for (size_t i = 0; i < nr && (i < na || borrow); i++) {
        uint64_t sub = (uint64_t)(i < na ? a[i] : 0) + borrow;
        borrow = r[i] < sub;
        r[i] = (uint32_t)(borrow ? r[i] + BASE - sub : r[i] - sub);
    }
}

/* r[0, 2n) = a[0, n) * b[0, n); r zeroed by the caller. 0, or -1 (memory). */
static int
mul_kara(uint32_t *r, const uint32_t *a, const uint32_t *b, size_t n)
{
    if (n <= KARATSUBA) {
        mul_school(r, a, n, b, n);
        return 0;
    }
    size_t h = n / 2, k = n - h; /* low halves h limbs, high halves k >= h */
    uint32_t *t = calloc(4 * (k + 1), sizeof *t);
    if (!t)
        return -1;
    uint32_t *sa = t, *sb = t + (k + 1), *z1 = t + 2 * (k + 1);
    memcpy(sa, a + h, k * sizeof *sa);
    memcpy(sb, b + h, k * sizeof *sb);
    sa[k] = add_to(sa, k, a, h);
    sb[k] = add_to(sb, k, b, h);
    int rc = mul_kara(r, a, b, h) || mul_kara(r + 2 * h, a + h, b + h, k) || mul_kara(z1, sa, sb, k + 1);
    if (rc == 0) {
        sub_from(z1, 2 * (k + 1), r, 2 * h);
        sub_from(z1, 2 * (k + 1), r + 2 * h, 2 * k);
        add_to(r + h, 2 * n - h, z1, 2 * (k + 1) <= 2 * n - h ? 2 * (k + 1) : 2 * n - h);
    }
    free(t);
    return rc ? -1 : 0;
}

static void
trim(dnum *x)
{
    while (x->n > 0 && x->d[x->n - 1] == 0)
        x->n--;
}

/* *out = a * b (b may be shared: it is only read). */
static int
dmul(const dnum *a, const dnum *b, dnum *out)
{
    size_t n = a->n > b->n ? a->n : b->n;
    uint32_t *pa = calloc(n, sizeof *pa), *pb = calloc(n, sizeof *pb), *r = calloc(2 * n + 1, sizeof *r);
    int rc = -1;
    if (pa && pb && r) {
        memcpy(pa, a->d, a->n * sizeof *pa);
        memcpy(pb, b->d, b->n * sizeof *pb);
        rc = mul_kara(r, pa, pb, n);
    }
    free(pa);
    free(pb);
    if (rc) {
        free(r);
        return -1;
    }
    out->d = r;
    out->n = 2 * n;
    trim(out);
    return 0;
}

/* Binary limbs to decimal limbs by repeated division by 10^9. */
static int
conv_small(const uint32_t *x, size_t n, dnum *out)
{
    uint32_t *l = malloc((n ? n : 1) * sizeof *l), *d = malloc((n * 32 / 29 + 2) * sizeof *d);
    if (!l || !d) {
        free(l);
        free(d);
        return -1;
    }
    memcpy(l, x, n * sizeof *l);
    size_t nd = 0;
    while (n > 0 && l[n - 1] == 0)
        n--;
    while (n > 0) {
        uint64_t rem = 0;
        for (size_t i = n; i-- > 0;) {
            uint64_t cur = rem << 32 | l[i];
            l[i] = (uint32_t)(cur / BASE);
            rem = cur % BASE;
        }
        d[nd++] = (uint32_t)rem;
        while (n > 0 && l[n - 1] == 0)
            n--;
    }
    free(l);
    out->d = d;
    out->n = nd;
    return 0;
}

/* pow[j] = 2^(32 * 2^j) in decimal, made on first use. */
typedef struct {
    dnum pow[64];
} powers;

static const dnum *
power(powers *p, unsigned j)
{
    if (p->pow[j].d)
        return &p->pow[j];
    if (j == 0) {
        uint32_t two32[2] = {0, 1};
        if (conv_small(two32, 2, &p->pow[0]))
            return NULL;
        return &p->pow[0];
    }
    const dnum *half = power(p, j - 1);
    if (!half || dmul(half, half, &p->pow[j]))
        return NULL;
    return &p->pow[j];
}

static int
conv(powers *p, const uint32_t *x, size_t n, dnum *out)
{
    while (n > 0 && x[n - 1] == 0)
        n--;
    if (n <= SMALL_LIMBS)
        return conv_small(x, n, out);
    unsigned j = 0;
    while (((size_t)2 << j) < n)
        j++;
    size_t m = (size_t)1 << j; /* m < n <= 2m */
    dnum lo = {0}, hi = {0}, prod = {0};
    const dnum *pw = power(p, j);
    int rc = -1;
    if (pw && conv(p, x, m, &lo) == 0 && conv(p, x + m, n - m, &hi) == 0 && dmul(&hi, pw, &prod) == 0) {
        uint32_t *r = realloc(prod.d, (prod.n > lo.n ? prod.n : lo.n) * sizeof *r + sizeof *r);
        if (r) {
            size_t nr = prod.n > lo.n ? prod.n : lo.n;
            memset(r + prod.n, 0, (nr + 1 - prod.n) * sizeof *r);
            r[nr] = add_to(r, nr, lo.d, lo.n);
            out->d = r;
            out->n = nr + 1;
            trim(out);
            prod.d = NULL;
            rc = 0;
        }
    }
    free(lo.d);
    free(hi.d);
    free(prod.d);
    return rc;
}

char *
cnode__tt_decimal(const unsigned char *le, size_t n, int neg)
{
    size_t nl = (n + 3) / 4;
    uint32_t *x = calloc(nl ? nl : 1, sizeof *x);
    if (!x)
        return NULL;
    for (size_t i = 0; i < n; i++)
        x[i / 4] |= (uint32_t)le[i] << (8 * (i % 4));
    powers p = {0};
    dnum d = {0};
    char *out = NULL;
    if (conv(&p, x, nl, &d) == 0 && (out = malloc(d.n * 9 + 3)) != NULL) {
        int k = sprintf(out, "%s%u", neg && d.n ? "-" : "", d.n ? (unsigned)d.d[d.n - 1] : 0u);
        for (size_t i = d.n ? d.n - 1 : 0; i-- > 0;)
            k += sprintf(out + k, "%09u", (unsigned)d.d[i]);
    }
    for (unsigned j = 0; j < 64; j++)
        free(p.pow[j].d);
    free(d.d);
    free(x);
    return out;
}
