/* The bounded term walker's atoms, as BEAM's binary_to_term takes them: at
 * most 255 characters (bytes for Latin-1 atoms, code points for UTF-8 ones),
 * and UTF-8 atoms must be valid UTF-8 (shortest forms, no surrogates, at most
 * U+10FFFF). A peer's atom outside that takes its link down. */
#include <CUnit/CUnit.h>
#include <string.h>

#include "ei_glue/glue.h"
#include "testutil.h"

/* tag, length, then n copies of the UTF-8 (or Latin-1) character ch */
static size_t
mk_atom(unsigned char *b, int tag, const char *ch, size_t n)
{
    size_t cl = strlen(ch), bytes = cl * n, k = 0;
    b[k++] = (unsigned char)tag;
    if (tag == 115 || tag == 119) {
        b[k++] = (unsigned char)bytes;
    } else {
        b[k++] = (unsigned char)(bytes >> 8);
        b[k++] = (unsigned char)bytes;
    }
    for (size_t i = 0; i < n; i++, k += cl)
        memcpy(b + k, ch, cl);
    return k;
}

static ptrdiff_t
walk(const unsigned char *b, size_t n, const char **why)
{
    tu_guard g = tu_guard_copy(b, n); /* a read past the end faults */
    ptrdiff_t r = cnode__term_extent(g.p, n, &cnode__term_limits_default, why);
    tu_guard_free(&g);
    return r;
}

static void
test_atom_lengths(void)
{
    unsigned char b[2048];
    const char *why = NULL;
    size_t n;
    n = mk_atom(b, 118, "a", 255);
    CU_ASSERT_EQUAL(walk(b, n, &why), (ptrdiff_t)n);
    n = mk_atom(b, 118, "a", 256);
    CU_ASSERT(walk(b, n, &why) < 0 && why && strstr(why, "255"));
    n = mk_atom(b, 118, "a", 300);
    CU_ASSERT(walk(b, n, &why) < 0);
    n = mk_atom(b, 118, "\xc3\xa9", 255); /* 255 x U+00E9: 510 bytes, 255 characters */
    CU_ASSERT_EQUAL(walk(b, n, &why), (ptrdiff_t)n);
    n = mk_atom(b, 118, "\xc3\xa9", 256);
    CU_ASSERT(walk(b, n, &why) < 0);
    n = mk_atom(b, 118, "\xf0\x9f\x98\x80", 255); /* 4-byte characters: 1020 bytes */
    CU_ASSERT_EQUAL(walk(b, n, &why), (ptrdiff_t)n);
    n = mk_atom(b, 119, "\xe2\x82\xac", 85); /* SMALL_ATOM_UTF8_EXT: 255 bytes */
    CU_ASSERT_EQUAL(walk(b, n, &why), (ptrdiff_t)n);
    n = mk_atom(b, 100, "a", 255); /* ATOM_EXT, Latin-1 */
    CU_ASSERT_EQUAL(walk(b, n, &why), (ptrdiff_t)n);
    n = mk_atom(b, 100, "a", 256);
    CU_ASSERT(walk(b, n, &why) < 0);
    n = mk_atom(b, 100, "\xe9", 255); /* Latin-1 bytes over 127 are characters, not UTF-8 */
    CU_ASSERT_EQUAL(walk(b, n, &why), (ptrdiff_t)n);
}

static void
test_atom_utf8_validity(void)
{
    static const char *bad[] = {
        "\xc0\x80",         /* overlong NUL */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xc3",             /* truncated */
        "\x80",             /* lone continuation byte */
        "\xff",
    };
    unsigned char b[64];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *why = NULL;
        size_t n = mk_atom(b, 118, bad[i], 1);
        CU_ASSERT(walk(b, n, &why) < 0 && why && strstr(why, "UTF-8"));
        n = mk_atom(b, 119, bad[i], 1);
        CU_ASSERT(walk(b, n, &why) < 0);
    }
    const char *why = NULL;
    size_t n = mk_atom(b, 118, "\xef\xbf\xbf", 1); /* U+FFFF is a character */
    CU_ASSERT_EQUAL(walk(b, n, &why), (ptrdiff_t)n);
}

/* The same rules for an atom inside a pid's node name. */
static void
test_atom_in_pid(void)
{
    unsigned char b[600];
    size_t k = 0;
    b[k++] = 88; /* NEW_PID_EXT */
    k += mk_atom(b + k, 118, "a", 300);
    memset(b + k, 0, 12);
    k += 12;
    const char *why = NULL;
    CU_ASSERT(walk(b, k, &why) < 0);
    k = 0;
    b[k++] = 88;
    k += mk_atom(b + k, 118, "n@h", 1);
    memset(b + k, 0, 12);
    k += 12;
    CU_ASSERT_EQUAL(walk(b, k, &why), (ptrdiff_t)k);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("term_walker", NULL, NULL);
    ADD_TEST(s, test_atom_lengths);
    ADD_TEST(s, test_atom_utf8_validity);
    ADD_TEST(s, test_atom_in_pid);
}
