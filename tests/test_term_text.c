/* tests/test_term_text.c: cnode_term_print, cnode_term_parse, cnode_term_format
 * and cnode_module_atom. Golden lines come from a real OTP 25 BEAM
 * (tests/data/term_text_gen.escript): hex(term_to_binary(T)) TAB ~0p text. */
#include "cnode_term.h"
#include "testutil.h"

#define GOLDEN "tests/data/term_text_golden.tsv"

typedef struct {
    unsigned char *bin; /* term_to_binary, 131 first */
    size_t len;
    char *text; /* ~0p, UTF-8 */
} gline;

static char *golden_buf;
static gline *lines;
static size_t nlines;

static int
golden_load(void)
{
    size_t n;
    golden_buf = tu_read_file(GOLDEN, &n);
    if (!golden_buf)
        return -1;
    size_t cap = 0;
    for (char *p = golden_buf; *p;) {
        char *nl = strchr(p, '\n'), *tab = strchr(p, '\t');
        if (!nl || !tab || tab > nl)
            return -1;
        *nl = 0;
        *tab = 0;
        if (nlines == cap) {
            cap = cap ? cap * 2 : 64;
            gline *np = realloc(lines, cap * sizeof *np);
            if (!np)
                return -1;
            lines = np;
        }
        gline *g = &lines[nlines++];
        size_t hl = strlen(p);
        g->bin = malloc(hl / 2 + 1);
        long k = g->bin ? tu_unhex(p, g->bin, hl / 2) : -1;
        if (k <= 0)
            return -1;
        g->len = (size_t)k;
        g->text = tab + 1;
        p = nl + 1;
    }
    return nlines > 0 ? 0 : -1;
}

static int
golden_free(void)
{
    for (size_t i = 0; i < nlines; i++)
        free(lines[i].bin);
    free(lines);
    free(golden_buf);
    lines = NULL;
    golden_buf = NULL;
    nlines = 0;
    return 0;
}

/* BEAM prints its own node's pids, refs and ports with node index 0; the
 * printer writes the node's name there (cnode_term.h). */
static char *
expected_text(const char *text)
{
    static const char from[] = "<0.", to[] = "<nonode@nohost.";
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, from)); p += 3)
        n++;
    char *o = malloc(strlen(text) + n * (sizeof to - sizeof from) + 1), *w = o;
    if (!o)
        return NULL;
    for (const char *p = text;;) {
        const char *h = strstr(p, from);
        size_t l = h ? (size_t)(h - p) : strlen(p);
        memcpy(w, p, l);
        w += l;
        if (!h)
            break;
        memcpy(w, to, sizeof to - 1);
        w += sizeof to - 1;
        p = h + 3;
    }
    *w = 0;
    return o;
}

/* A canonical re-encoding for equality: atoms as UTF-8, map pairs sorted
 * by their canonical key bytes. *opaque is set by pids, refs, ports, funs. */
typedef struct {
    ei_x_buff k, v;
} cpair;

static int
cmp_cpair(const void *a, const void *b)
{
    const cpair *x = a, *y = b;
    int n = x->k.index < y->k.index ? x->k.index : y->k.index;
    int c = memcmp(x->k.buff, y->k.buff, (size_t)n);
    return c ? c : x->k.index - y->k.index;
}

static int
canon(const char *b, int *i, ei_x_buff *o, int *opaque)
{
    int type, size, s = *i, n;
    if (ei_get_type(b, i, &type, &size))
        return -1;
    switch (type) {
    case ERL_ATOM_EXT:
    case ERL_SMALL_ATOM_EXT:
    case ERL_ATOM_UTF8_EXT:
    case ERL_SMALL_ATOM_UTF8_EXT: {
        char a[MAXATOMLEN_UTF8];
        if (ei_decode_atom_as(b, i, a, sizeof a, ERLANG_UTF8, NULL, NULL) < 0)
            return -1;
        return ei_x_encode_atom_as(o, a, ERLANG_UTF8, ERLANG_UTF8);
    }
    case ERL_SMALL_TUPLE_EXT:
    case ERL_LARGE_TUPLE_EXT:
        if (ei_decode_tuple_header(b, i, &n) || ei_x_encode_tuple_header(o, n))
            return -1;
        while (n-- > 0)
            if (canon(b, i, o, opaque))
                return -1;
        return 0;
    case ERL_LIST_EXT:
        if (ei_decode_list_header(b, i, &n) || ei_x_encode_list_header(o, n))
            return -1;
        for (int k = 0; k <= n; k++) /* elements and the tail */
            if (canon(b, i, o, opaque))
                return -1;
        return 0;
    case ERL_MAP_EXT: {
        if (ei_decode_map_header(b, i, &n) || ei_x_encode_map_header(o, n))
            return -1;
        cpair *p = calloc((size_t)n + 1, sizeof *p);
        int res = p ? 0 : -1;
        for (int k = 0; k < n && res == 0; k++) {
            ei_x_new(&p[k].k);
            ei_x_new(&p[k].v);
            res = canon(b, i, &p[k].k, opaque) || canon(b, i, &p[k].v, opaque) ? -1 : 0;
        }
        if (res == 0)
            qsort(p, (size_t)n, sizeof *p, cmp_cpair);
        for (int k = 0; k < n && p; k++) {
            if (res == 0)
                res = ei_x_append(o, &p[k].k) || ei_x_append(o, &p[k].v) ? -1 : 0;
            ei_x_free(&p[k].k);
            ei_x_free(&p[k].v);
        }
        free(p);
        return res;
    }
    case ERL_PID_EXT:
    case ERL_NEW_PID_EXT:
    case ERL_REFERENCE_EXT:
    case ERL_NEW_REFERENCE_EXT:
    case ERL_NEWER_REFERENCE_EXT:
    case ERL_PORT_EXT:
    case ERL_NEW_PORT_EXT:
    case ERL_V4_PORT_EXT:
    case ERL_NEW_FUN_EXT:
    case ERL_FUN_EXT:
    case ERL_EXPORT_EXT:
        *opaque = 1;
        /* fall through */
    default:
        if (ei_skip_term(b, i) < 0)
            return -1;
        return ei_x_append_buf(o, b + s, *i - s);
    }
}


/* The tests read the API in its old shape, for brevity: the printed text or
 * NULL; the parser's code, its message copied into msg. */
static char *
print_s(const char *buf, size_t len)
{
    char *s = NULL;
    cnode_error e = {0};
    int rc = cnode_term_print(buf, len, &s, &e);
    CU_ASSERT((rc == 0) == (s != NULL));
    CU_ASSERT(rc == 0 || e.code == rc);
    return s;
}

static int
parse_m(const char *text, ei_x_buff *x, char *msg, size_t cap)
{
    cnode_error e = {0};
    int rc = cnode_term_parse(text, x, &e);
    if (msg && cap)
        snprintf(msg, cap, "%s", rc ? e.message : "");
    return rc;
}

/* ---- (a) print every golden term ----------------------------------------------------------------------------- */

static void
test_print_golden(void)
{
    CU_ASSERT_FATAL(nlines >= 80);
    size_t bad = 0;
    for (size_t i = 0; i < nlines; i++) {
        gline *g = &lines[i];
        char *want = expected_text(g->text);
        char *got = print_s((const char *)g->bin, g->len);
        char *got_nover = print_s((const char *)g->bin + 1, g->len - 1);
        if (!got || !want || strcmp(got, want) != 0 || !got_nover || strcmp(got_nover, got) != 0) {
            if (bad++ < 10)
                fprintf(stderr, "\nline %zu:\n  want %.300s\n  got  %.300s\n", i + 1, want ? want : "(oom)",
                        got ? got : "(NULL)");
        }
        free(want);
        free(got);
        free(got_nover);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* Each golden term ends on a PROT_NONE page: no read past the end. */
static void
test_print_guard_page(void)
{
    for (size_t i = 0; i < nlines; i++) {
        tu_guard g = tu_guard_copy(lines[i].bin, lines[i].len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(g.p);
        char *s = print_s(g.p, lines[i].len);
        CU_ASSERT_PTR_NOT_NULL(s);
        free(s);
        tu_guard_free(&g);
    }
}

/* ---- (b) parse the text back ----------------------------------------------------------------------------------- */

static void
test_round_trip(void)
{
    size_t bad = 0, checked = 0, skipped = 0;
    for (size_t i = 0; i < nlines; i++) {
        gline *g = &lines[i];
        ei_x_buff want = {0}, have = {0}, parsed;
        int opaque = 0, idx = 1;
        CU_ASSERT_FATAL(ei_x_new(&want) == 0 && ei_x_new(&have) == 0 && ei_x_new(&parsed) == 0);
        CU_ASSERT_FATAL(canon((const char *)g->bin, &idx, &want, &opaque) == 0);
        char err[200];
        int rc = parse_m(g->text, &parsed, err, sizeof err);
        if (opaque) {
            /* pids, refs, ports and funs have no term syntax */
            CU_ASSERT_EQUAL(rc, CNODE_EBADMSG);
            CU_ASSERT_EQUAL(parsed.index, 0);
            CU_ASSERT_PTR_NOT_NULL(strstr(err, "offset"));
            skipped++;
        } else if (rc != 0) {
            if (bad++ < 10)
                fprintf(stderr, "\nline %zu: parse failed: %s\n  text %.300s\n", i + 1, err, g->text);
        } else {
            char *again = print_s(parsed.buff, (size_t)parsed.index);
            idx = 0;
            int same_term = canon(parsed.buff, &idx, &have, &opaque) == 0 && idx == parsed.index &&
                            have.index == want.index && memcmp(have.buff, want.buff, (size_t)want.index) == 0;
            if (!again || strcmp(again, g->text) != 0 || !same_term) {
                if (bad++ < 10)
                    fprintf(stderr, "\nline %zu: round trip differs (same term: %d)\n  text %.300s\n  got  %.300s\n", i + 1,
                            same_term, g->text, again ? again : "(NULL)");
            }
            free(again);
            checked++;
        }
        ei_x_free(&want);
        ei_x_free(&have);
        ei_x_free(&parsed);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(checked >= 100);
    CU_ASSERT(skipped >= 8);
}

/* Parsing appends after what the buffer holds, e.g. the version byte. */
static void
test_parse_appends(void)
{
    ei_x_buff x;
    char err[128];
    CU_ASSERT_FATAL(ei_x_new_with_version(&x) == 0);
    CU_ASSERT_EQUAL(parse_m(" {ok, [1, 2.5, <<\"x\">>]} . % done\n", &x, err, sizeof err), 0);
    CU_ASSERT_EQUAL((unsigned char)x.buff[0], 131);
    char *s = print_s(x.buff, (size_t)x.index);
    CU_ASSERT_STRING_EQUAL(s ? s : "", "{ok,[1,2.5,<<\"x\">>]}");
    free(s);
    ei_x_free(&x);
}

/* Accepted syntax beyond what ~0p writes, and what it prints as. */
static void
test_parse_syntax(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"16#ff", "255"},
        {"-16#FF", "-255"},
        {"2#1010", "10"},
        {"36#zz", "1295"},
        {"1_000_000", "1000000"},
        {"$a", "97"},
        {"-$a", "-97"},
        {"$\\n", "10"},
        {"$\\x{1F600}", "128512"},
        {"$ ", "32"},
        {"$é", "233"},
        {"- 5", "-5"},
        {"+5", "5"},
        {"1.0e-3", "0.001"},
        {"-2.0E10", "-2.0e10"},
        {"1_0.2_5", "10.25"},
        {"123456789012345678901234567890", "123456789012345678901234567890"},
        {"-16#10000000000000000", "-18446744073709551616"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"'hello'", "hello"},
        {"'Elixir.String'", "'Elixir.String'"},
        {"'\\x{65E5}'", "'\\x{65E5}'"},
        {"'\\^a\\s\\d\\101'", "'\\001 \\dA'"},
        {"true", "true"},
        {"a@b_C9", "a@b_C9"},
        {"\"ab\" \"cd\"", "\"abcd\""},
        {"\"\\x41\\101\\e\"", "\"AA\\e\""},
        {"\"日本\"", "[26085,26412]"},
        {"[]", "[]"},
        {"[1,2,3]", "[1,2,3]"},
        {"[$a,$b]", "\"ab\""},
        {"[a|[b|[c]]]", "[a,b,c]"},
        {"[1|\"ab\"]", "[1,97,98]"},
        {"[a,b|c]", "[a,b|c]"},
        {"<<>>", "<<>>"},
        {"<<\"日本\"/utf8>>", "<<230,151,165,230,156,172>>"},
        {"<<1:3>>", "<<1:3>>"},
        {"<<97,98,1:3>>", "<<97,98,1:3>>"},
        {"<<-1, 0>>", "<<255,0>>"},
        {"<<-1>>", "<<\"ÿ\">>"},
        {"<<256, $a>>", "<<0,97>>"},
        {"<<1:16, \"A\">>", "<<0,1,65>>"},
        {"<<7:4, 1:4>>", "<<\"q\">>"},
        {"<<0:0>>", "<<>>"},
        {"#{b => 2, a => 1}", "#{a => 1,b => 2}"},
        {"#{1.0 => a, 1 => b}", "#{1 => b,1.0 => a}"},
        {"{}", "{}"},
        {"{a, {b, {c}}}", "{a,{b,{c}}}"},
        {"%% comment\n  x  % more\n", "x"},
        {"maybe", "maybe"},
        {"'and'", "'and'"},
        {"'a\\'b'", "'a\\'b'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ei_x_buff x;
        char err[160] = "";
        CU_ASSERT_FATAL(ei_x_new(&x) == 0);
        int rc = parse_m(cases[i].in, &x, err, sizeof err);
        char *s = rc == 0 ? print_s(x.buff, (size_t)x.index) : NULL;
        if (!s || strcmp(s, cases[i].out) != 0) {
            fprintf(stderr, "\n%s: want %s got %s (%s)\n", cases[i].in, cases[i].out, s ? s : "NULL", err);
            CU_FAIL("parse/print mismatch");
        }
        free(s);
        ei_x_free(&x);
    }
}

/* ---- (c) bad input --------------------------------------------------------------------------------------------- */

static void
test_parse_errors(void)
{
    static const char *const bad[] = {
        "[1,2",
        "{a,",
        "<<\"x",
        "'abc",
        "#{a =>}",
        "1.2.3",
        "[a|]",
        "",
        "   . ",
        "abc def",
        "1e5",
        "Var",
        "_",
        "[1,,2]",
        "{,}",
        "#{a}",
        "#{a => 1,}",
        "#{a => 1, a => 2}",
        "#{[] => a, \"\" => b}", /* the same key twice */
        "#{{1, 2.0} => a, {1, 2.0} => b}",
        "<<a>>",
        "<<1.5>>",
        "<<\"x\"/utf16>>",
        "<<1:>>",
        "\"abc",
        "$",
        "16#",
        "37#1",
        "1#0",
        "16#fg",
        "'\\x{110000}'",
        "'\\x{D800}'",
        "\"\\xZZ\"",
        "[1|2|3]",
        "[1|2,3]",
        "1..",
        "and",
        "receive",
        "\xff",
        "'\xc3'",
        "{a b}",
        "--1",
        "- a",
        "1.0e999",
        "1.0e",
        "#a",
        "<1>",
        "@",
        "a.b",
        "<<1:65537>>",
        "<<99999999999999999999>>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ei_x_buff x;
        char err[160] = "";
        CU_ASSERT_FATAL(ei_x_new_with_version(&x) == 0);
        int before = x.index;
        int rc = parse_m(bad[i], &x, err, sizeof err);
        if (rc != CNODE_EBADMSG || x.index != before || !strstr(err, "offset")) {
            fprintf(stderr, "\nbad input %zu (%s): rc %d index %d err '%s'\n", i, bad[i], rc, x.index, err);
            CU_FAIL("bad input accepted or error without offset");
        }
        ei_x_free(&x);
    }
}

static void
test_parse_error_offsets(void)
{
    static const struct {
        const char *in;
        const char *msg;
    } cases[] = {
        {"[1,2", "at offset 4: unterminated list opened at offset 0"},
        {"{a, b c}", "at offset 6: expected ',' or '}' in the tuple"},
        {"[a|]", "at offset 3: unexpected character ']'"},
        {"1.2.3", "at offset 4: unexpected text after the term"},
        {"#{a =>}", "at offset 6: unexpected character '}'"},
        {"'abc", "at offset 4: unterminated quoted atom opened at offset 0"},
        {"<<\"x", "at offset 4: unterminated string opened at offset 2"},
        {"#{a => [1, {2, <<3", "at offset 18: unterminated binary opened at offset 15"},
        {"<<1, ", "at offset 5: unterminated binary opened at offset 0"},
        {"{x, Y}", "at offset 4: variables are not terms (quote the atom: 'Y')"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ei_x_buff x;
        char err[160] = "";
        CU_ASSERT_FATAL(ei_x_new(&x) == 0);
        CU_ASSERT_EQUAL(parse_m(cases[i].in, &x, err, sizeof err), CNODE_EBADMSG);
        if (strcmp(err, cases[i].msg) != 0) {
            fprintf(stderr, "\n%s: want '%s' got '%s'\n", cases[i].in, cases[i].msg, err);
            CU_FAIL("error message");
        }
        ei_x_free(&x);
    }
}

/* 100000 '[' and friends: an error, not a stack overflow. */
static void
test_parse_deep(void)
{
    static const char opens[] = "[{<#";
    for (const char *o = opens; *o; o++) {
        size_t n = 100000;
        char *t = malloc(3 * n + 1), *w = t;
        CU_ASSERT_FATAL(t != NULL);
        for (size_t i = 0; i < n; i++) {
            if (*o == '<')
                *w++ = '<', *w++ = '<';
            else if (*o == '#')
                *w++ = '#', *w++ = '{';
            else
                *w++ = *o;
        }
        *w = 0;
        ei_x_buff x;
        char err[160] = "";
        CU_ASSERT_FATAL(ei_x_new(&x) == 0);
        int rc = parse_m(t, &x, err, sizeof err);
        CU_ASSERT_EQUAL(rc, CNODE_EBADMSG);
        CU_ASSERT_EQUAL(x.index, 0);
        if (*o != '<') /* binaries do not nest: "<<<<" fails at once */
            CU_ASSERT_PTR_NOT_NULL(strstr(err, "nested deeper than 1000"));
        ei_x_free(&x);
        free(t);
    }
    /* 1000 levels are fine and print back */
    char t[2 * 1000 + 1];
    memset(t, '[', 1000);
    memset(t + 1000, ']', 1000);
    t[2000] = 0;
    ei_x_buff x;
    CU_ASSERT_FATAL(ei_x_new(&x) == 0);
    CU_ASSERT_EQUAL(parse_m(t, &x, NULL, 0), 0);
    char *s = print_s(x.buff, (size_t)x.index);
    CU_ASSERT(s && strcmp(s, t) == 0);
    free(s);
    ei_x_free(&x);
}

/* NULL arguments, a tiny err buffer, a long atom. */
static void
test_parse_edges(void)
{
    ei_x_buff x;
    char err[8];
    CU_ASSERT_FATAL(ei_x_new(&x) == 0);
    CU_ASSERT_EQUAL(parse_m(NULL, &x, err, sizeof err), CNODE_EINVAL);
    CU_ASSERT_EQUAL(parse_m("a", NULL, err, sizeof err), CNODE_EINVAL);
    CU_ASSERT_EQUAL(parse_m("[", &x, err, sizeof err), CNODE_EBADMSG);
    CU_ASSERT_EQUAL(strlen(err), sizeof err - 1);
    CU_ASSERT_EQUAL(parse_m("[", &x, NULL, 0), CNODE_EBADMSG);
    char atom[260];
    memset(atom, 'a', 255);
    atom[255] = 0;
    CU_ASSERT_EQUAL(parse_m(atom, &x, NULL, 0), 0);
    atom[255] = 'a';
    atom[256] = 0;
    int before = x.index;
    char msg[100];
    CU_ASSERT_EQUAL(parse_m(atom, &x, msg, sizeof msg), CNODE_EBADMSG);
    CU_ASSERT_EQUAL(x.index, before);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "longer than 255"));
    ei_x_free(&x);
}

/* ---- (d) truncated and odd encodings --------------------------------------------------------------------------- */

static void
test_print_prefixes(void)
{
    for (size_t i = 0; i < nlines; i++) {
        gline *g = &lines[i];
        for (size_t n = 0; n < g->len; n++) {
            /* long terms: every prefix near both ends, a stride between */
            if (g->len > 2048 && n > 1024 && n < g->len - 1024 && n % 97)
                continue;
            char *p = malloc(n ? n : 1);
            CU_ASSERT_FATAL(p != NULL);
            memcpy(p, g->bin, n);
            char *s = print_s(p, n);
            CU_ASSERT_PTR_NULL(s); /* a strict prefix of a term is never a whole term */
            free(s);
            free(p);
        }
    }
    CU_ASSERT_PTR_NULL(print_s(NULL, 0));
    CU_ASSERT_PTR_NULL(print_s("", 0));
    CU_ASSERT_PTR_NULL(print_s("\x83", 1));
}

static void
test_print_malformed(void)
{
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\x83\x61\x01\x61", 4},                           /* trailing bytes */
        {"\x83\x77\x02\xc3\x28", 5},                       /* atom that is not UTF-8 */
        {"\x83\x46\x7f\xf0\x00\x00\x00\x00\x00\x00", 10}, /* +infinity */
        {"\x83\x4d\x00\x00\x00\x01\x09\xff", 8},           /* 9 trailing bits */
        {"\x83\x63" "nan" "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 33}, /* FLOAT_EXT text BEAM refuses */
        {"\x83\x52\x00", 3},                               /* atom cache ref */
        {"\x83\x50\x00\x00\x00\x01\x78", 7},               /* compressed */
        {"\x83\x7a", 2},                                   /* unknown tag */
        {"\x83\x6c\xff\xff\xff\xff\x6a", 7},               /* list longer than its bytes */
        {"\x83\x74\x00\x00\x00\x01\x61\x01", 8},           /* map missing a value */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = malloc(cases[i].len);
        CU_ASSERT_FATAL(p != NULL);
        memcpy(p, cases[i].bytes, cases[i].len);
        char *s = print_s(p, cases[i].len);
        if (s)
            fprintf(stderr, "\nmalformed case %zu printed %s\n", i, s);
        CU_ASSERT_PTR_NULL(s);
        free(s);
        free(p);
    }
    /* BEAM reads any bignum sign byte but 0 as negative */
    char *s = print_s("\x83\x6e\x01\x02\x01", 5);
    CU_ASSERT_STRING_EQUAL(s ? s : "", "-1");
    free(s);
}

/* Encodings a C program may write that term_to_binary never does. */
static void
test_print_noncanonical(void)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *text;
    } cases[] = {
        {"\x6c\x00\x00\x00\x02\x61\x68\x61\x69\x6a", 10, "\"hi\""},               /* list of small ints */
        {"\x6c\x00\x00\x00\x01\x61\x68\x6b\x00\x01\x69", 11, "\"hi\""},           /* string tail */
        {"\x6c\x00\x00\x00\x01\x61\x01\x6b\x00\x01\x69", 11, "[1,105]"},          /* string tail, not printable */
        {"\x6c\x00\x00\x00\x00\x64\x00\x01\x78", 9, "x"},                         /* no elements: just the tail */
        {"\x6c\x00\x00\x00\x01\x61\x01\x6c\x00\x00\x00\x01\x61\x02\x6a", 15, "[1,2]"},
        {"\x6b\x00\x00", 3, "[]"},                                                 /* empty STRING_EXT */
        {"\x64\x00\x02\xe9\x61", 5, "\xc3\xa9" "a"},                               /* latin-1 ATOM_EXT */
        {"\x73\x03\x61\x6e\x64", 5, "'and'"},                                      /* SMALL_ATOM_EXT */
        {"\x6e\x02\x00\x01\x00", 5, "1"},                                          /* bignum with a zero high byte */
        {"\x6e\x00\x01", 3, "0"},                                                  /* empty bignum */
        {"\x62\xff\xff\xff\xff", 5, "-1"},
        {"\x6c\x00\x00\x00\x01\x62\x00\x00\x00\x41\x6a", 11, "\"A\""},            /* INTEGER_EXT element */
        {"\x74\x00\x00\x00\x02\x64\x00\x01\x62\x61\x02\x64\x00\x01\x61\x61\x01", 17, "#{a => 1,b => 2}"},
        {"\x4d\x00\x00\x00\x01\x08\x41", 7, "<<\"A\">>"},                          /* 8 bits in the last byte */
        {"\x63" "2.50000000000000000000e+00\0\0\0\0\0", 32, "2.5"},               /* old FLOAT_EXT */
        {"\x68\x02\x6a\x6a", 4, "{[],[]}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = malloc(cases[i].len);
        CU_ASSERT_FATAL(p != NULL);
        memcpy(p, cases[i].bytes, cases[i].len);
        char *s = print_s(p, cases[i].len);
        if (!s || strcmp(s, cases[i].text) != 0) {
            fprintf(stderr, "\nnoncanonical case %zu: want %s got %s\n", i, cases[i].text, s ? s : "NULL");
            CU_FAIL("noncanonical print");
        }
        free(s);
        free(p);
    }
}

/* Remote identifiers carry their node's name where BEAM prints an index. */
static void
test_print_remote_ids(void)
{
    ei_x_buff x;
    erlang_pid pid = {.node = "a@host", .num = 85, .serial = 2, .creation = 7};
    erlang_ref ref = {.node = "a@host", .len = 3, .n = {1, 2, 3}, .creation = 7};
    erlang_port port = {.node = "a@host", .id = 5, .creation = 7};
    CU_ASSERT_FATAL(ei_x_new(&x) == 0);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_pid(&x, &pid);
    ei_x_encode_ref(&x, &ref);
    ei_x_encode_port(&x, &port);
    char *s = print_s(x.buff, (size_t)x.index);
    CU_ASSERT_STRING_EQUAL(s ? s : "", "{<a@host.85.2>,#Ref<a@host.3.2.1>,#Port<a@host.5>}");
    free(s);
    ei_x_free(&x);
}

/* ---- (e) module names ------------------------------------------------------------------------------------------ */

static void
test_module_name(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"MyApp.Users", "Elixir.MyApp.Users"},
        {"String", "Elixir.String"},
        {"Elixir.String", "Elixir.String"},
        {"lists", "lists"},
        {"erlang", "erlang"},
        {"'Elixir.Foo'", "'Elixir.Foo'"},
        {"\xc3\xa9lan", "\xc3\xa9lan"},
        {"\xc3\x89lan", "Elixir.\xc3\x89lan"},
        {"Elixir", "Elixir.Elixir"},
        {"_private", "_private"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CU_ASSERT_EQUAL(cnode_module_atom(cases[i].in, out, sizeof out), 0);
        CU_ASSERT_STRING_EQUAL(out, cases[i].out);
    }
    /* exactly enough room, and one byte short */
    CU_ASSERT_EQUAL(cnode_module_atom("Foo", out, sizeof "Elixir.Foo"), 0);
    CU_ASSERT_STRING_EQUAL(out, "Elixir.Foo");
    CU_ASSERT_EQUAL(cnode_module_atom("Foo", out, sizeof "Elixir.Foo" - 1), CNODE_EINVAL);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(cnode_module_atom("lists", out, 6), 0);
    CU_ASSERT_EQUAL(cnode_module_atom("lists", out, 5), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_module_atom(NULL, out, sizeof out), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_module_atom("Foo", NULL, 10), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_module_atom("Foo", out, 0), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_module_atom("", out, sizeof out), CNODE_EINVAL);
    /* an atom has at most 255 characters: "Elixir." counts */
    char big[300];
    memset(big, 'A', 249);
    big[249] = 0;
    char atom[300];
    CU_ASSERT_EQUAL(cnode_module_atom(big, atom, sizeof atom), CNODE_EINVAL);
    big[248] = 0;
    CU_ASSERT_EQUAL(cnode_module_atom(big, atom, sizeof atom), 0);
}

/* Bignums print by splitting and joining halves (term/decimal.c): integer
 * literals of every size up to the parser's 65536 digits read back the same,
 * signs and digit patterns that stress carries (all 9s, 1 and zeros) too. */
static void
test_bignum_decimal(void)
{
    static const size_t sizes[] = {1, 9, 10, 18, 19, 20, 100, 433, 434, 435, 1000, 4097, 9999, 20000, 65536};
    unsigned seed = 12345;
    char *text = malloc(65536 + 2);
    CU_ASSERT_FATAL(text != NULL);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (int pattern = 0; pattern < 4; pattern++) {
            size_t n = sizes[si], k = 0;
            if (pattern == 3)
                text[k++] = '-';
            for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                char c = pattern == 0 ? '9' : pattern == 1 ? (i == 0 ? '1' : '0') : (char)('0' + (seed >> 16) % 10);
                if (i == 0 && c == '0')
                    c = '7';
                text[k++] = c;
            }
            text[k] = 0;
            ei_x_buff x;
            ei_x_new(&x);
            char err[128];
            CU_ASSERT_EQUAL_FATAL(parse_m(text, &x, err, sizeof err), 0);
            char *s = print_s(x.buff, (size_t)x.index);
            CU_ASSERT_PTR_NOT_NULL(s);
            if (s && strcmp(s, text) != 0)
                fprintf(stderr, "\nbignum of %zu digits (pattern %d) printed differently\n", n, pattern);
            CU_ASSERT(s && strcmp(s, text) == 0);
            free(s);
            ei_x_free(&x);
        }
    }
    free(text);
}

/* cnode_term_format: holes filled from arguments give the same bytes as the
 * text with the values written out; bad holes are errors naming the offset. */
static int
same_as_text(const ei_x_buff *x, const char *text)
{
    ei_x_buff y;
    ei_x_new(&y);
    int ok = parse_m(text, &y, NULL, 0) == 0 && y.index == x->index && memcmp(x->buff, y.buff, (size_t)y.index) == 0;
    ei_x_free(&y);
    return ok;
}

static void
test_format(void)
{
    cnode_error ce = {0};
    ei_x_buff x;
    erlang_pid pid = {.node = "a@h", .num = 5, .serial = 1, .creation = 7};
    erlang_ref ref = {.node = "a@h", .len = 3, .n = {1, 2, 3}, .creation = 7};
    ei_x_buff t;
    ei_x_new(&t);
    parse_m("{pre, [encoded]}", &t, NULL, 0);

    ei_x_new(&x);
    CU_ASSERT_EQUAL(cnode_term_format(&x, &ce, "{~a, [~i, ~i | ~a], #{~b => ~f}, ~s, ~u, ~l}", "ok", -5L,
                                      1L << 40, "tail", "k\xc3\xa9", 2.5, "h\xc3\xa9llo \xe6\x97\xa5", 4294967296UL,
                                      -(1LL << 62)),
                    0);
    CU_ASSERT(same_as_text(&x, "{ok, [-5, 1099511627776 | tail], #{<<\"k\xc3\xa9\">>/utf8 => 2.5}, "
                               "\"h\xc3\xa9llo \xe6\x97\xa5\", 4294967296, -4611686018427387904}") ||
              same_as_text(&x, "{ok, [-5, 1099511627776 | tail], #{<<107,195,169>> => 2.5}, "
                               "[104,233,108,108,111,32,26085], 4294967296, -4611686018427387904}"));
    ei_x_free(&x);

    ei_x_new(&x);
    CU_ASSERT_EQUAL(cnode_term_format(&x, &ce, "[~p, ~r, ~t, ~t, ~B]", &pid, &ref, t.buff, (size_t)t.index,
                                      "\x83\x61\x07", (size_t)3, "\0\1", (size_t)2),
                    0);
    char *txt = print_s(x.buff, (size_t)x.index);
    CU_ASSERT_PTR_NOT_NULL(txt);
    if (txt)
        CU_ASSERT_STRING_EQUAL(txt, "[<a@h.5.1>,#Ref<a@h.3.2.1>,{pre,[encoded]},7,<<0,1>>]");
    free(txt);
    ei_x_free(&x);

    /* no holes: exactly cnode_term_parse */
    ei_x_new(&x);
    CU_ASSERT_EQUAL(cnode_term_format(&x, &ce, "{a, \"~i is text here\", 'and ~a'}"), 0);
    CU_ASSERT(same_as_text(&x, "{a, \"~i is text here\", 'and ~a'}"));
    ei_x_free(&x);

    /* errors: out->index untouched, the message names where */
    struct {
        const char *fmt, *want;
    } bad[] = {
        {"{~q}", "offset 1"},
        {"[~a, ~a]", "offset 5"},
        {"~f", "offset 0"},
        {"~t", "offset 0"},
        {"{~i,", "offset"},
        {"~", "offset 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ei_x_new(&x);
        ei_x_encode_atom(&x, "keep");
        int before = x.index, rc;
        cnode_error_clear(&ce);
        if (i == 1)
            rc = cnode_term_format(&x, &ce, bad[i].fmt, "ok", (const char *)NULL);
        else if (i == 2)
            rc = cnode_term_format(&x, &ce, bad[i].fmt, 0.0 / 0.0);
        else if (i == 3)
            rc = cnode_term_format(&x, &ce, bad[i].fmt, "\x68\x02\x61", (size_t)3); /* truncated */
        else if (i == 4)
            rc = cnode_term_format(&x, &ce, bad[i].fmt, 1L);
        else
            rc = cnode_term_format(&x, &ce, bad[i].fmt);
        CU_ASSERT_EQUAL(rc, CNODE_EBADMSG);
        CU_ASSERT_EQUAL(x.index, before);
        if (!strstr(ce.message, bad[i].want))
            fprintf(stderr, "\nformat '%s': %s\n", bad[i].fmt, ce.message);
        CU_ASSERT_PTR_NOT_NULL(strstr(ce.message, bad[i].want));
        ei_x_free(&x);
    }
    ei_x_free(&t);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("term_text", golden_load, golden_free);
    ADD_TEST(s, test_print_golden);
    ADD_TEST(s, test_bignum_decimal);
    ADD_TEST(s, test_print_guard_page);
    ADD_TEST(s, test_round_trip);
    ADD_TEST(s, test_parse_appends);
    ADD_TEST(s, test_parse_syntax);
    ADD_TEST(s, test_parse_errors);
    ADD_TEST(s, test_parse_error_offsets);
    ADD_TEST(s, test_parse_deep);
    ADD_TEST(s, test_parse_edges);
    ADD_TEST(s, test_print_prefixes);
    ADD_TEST(s, test_print_malformed);
    ADD_TEST(s, test_print_noncanonical);
    ADD_TEST(s, test_print_remote_ids);
    ADD_TEST(s, test_module_name);
    ADD_TEST(s, test_format);
}
