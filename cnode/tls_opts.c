/* The ssl_dist_optfile as BEAM users write it for -ssl_dist_optfile (read by OTP's
 * ssl_dist_sup): one term [{server, Opts}, {client, Opts}], parsed with the project's term text
 * parser and walked with ei. Every option either does what it does on BEAM or is refused: an
 * ignored security option would be a silent downgrade. No OpenSSL here (tls.c applies it). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "cnode_term.h"

void
cnode__tls_side_init(cnode__tls_side *s)
{
    memset(s, 0, sizeof *s);
    s->verify = -1;
    s->fail_if_no_peer_cert = -1;
    s->depth = -1;
}

void
cnode__tls_side_free(cnode__tls_side *s)
{
    free(s->certfile);
    free(s->keyfile);
    free(s->cafile);
    free(s->ciphers);
    free(s->sni);
    cnode__tls_side_init(s);
}

typedef struct {
    const char *buf;
    int idx;
    char *why;
    size_t cap;
    const char *side; /* "server" or "client" */
} walk;

static int
bad(walk *w, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (w->side)
        snprintf(w->why, w->cap, "{%s, ...}: %s", w->side, msg);
    else
        snprintf(w->why, w->cap, "%s", msg);
    return -1;
}

/* Each element of a proper list, [a, b] or [a | [b]] alike (the parser keeps the cons as
 * written): fn(w, ud) decodes one. 0, or -1 (why set). */
static int
each(walk *w, const char *what, int (*fn)(walk *, void *), void *ud)
{
    for (;;) {
        int type, size, n;
        if (ei_get_type(w->buf, &w->idx, &type, &size) != 0)
            return bad(w, "%s: malformed", what);
        if (type == ERL_NIL_EXT)
            return ei_decode_list_header(w->buf, &w->idx, &n) == 0 ? 0 : bad(w, "%s: malformed", what);
        if (type != ERL_LIST_EXT || ei_decode_list_header(w->buf, &w->idx, &n) != 0)
            return bad(w, "%s: a list is expected", what);
        for (int i = 0; i < n; i++)
            if (fn(w, ud) != 0)
                return -1;
    }
}

static int
get_atom(walk *w, char *out)
{
    return ei_decode_atom(w->buf, &w->idx, out);
}

/* A string, a binary or [] (Erlang text "..." or <<"...">>) into a malloc'd C string. */
static int
get_string(walk *w, const char *key, char **out)
{
    int type, size;
    if (ei_get_type(w->buf, &w->idx, &type, &size) != 0)
        return bad(w, "%s: malformed", key);
    char *s = NULL;
    if (type == ERL_STRING_EXT || type == ERL_NIL_EXT) {
        s = malloc((size_t)size + 1);
        if (!s || ei_decode_string(w->buf, &w->idx, s) != 0) {
            free(s);
            return bad(w, "%s: not a string", key);
        }
    } else if (type == ERL_BINARY_EXT) {
        long len;
        s = malloc((size_t)size + 1);
        if (!s || ei_decode_binary(w->buf, &w->idx, s, &len) != 0) {
            free(s);
            return bad(w, "%s: not a string", key);
        }
        s[len] = 0;
    } else {
        return bad(w, "%s: a string (file name or text) is expected", key);
    }
    if (strlen(s) != (size_t)size && type != ERL_NIL_EXT && type != ERL_BINARY_EXT) {
        free(s);
        return bad(w, "%s: contains a NUL", key);
    }
    free(*out);
    *out = s;
    return 0;
}

static int
get_bool(walk *w, const char *key, int *out)
{
    char a[MAXATOMLEN_UTF8];
    if (get_atom(w, a) != 0 || (strcmp(a, "true") != 0 && strcmp(a, "false") != 0))
        return bad(w, "%s: true or false is expected", key);
    *out = strcmp(a, "true") == 0;
    return 0;
}

static int
one_version(walk *w, void *ud)
{
    unsigned *v = ud;
    char a[MAXATOMLEN_UTF8];
    if (get_atom(w, a) != 0)
        return bad(w, "versions: a list of atoms is expected");
    if (strcmp(a, "tlsv1.2") == 0)
        *v |= CNODE_TLS_V1_2;
    else if (strcmp(a, "tlsv1.3") == 0)
        *v |= CNODE_TLS_V1_3;
    else
        return bad(w, "versions: '%s' cannot be honoured (only 'tlsv1.2' and 'tlsv1.3')", a);
    return 0;
}

static int
get_versions(walk *w, unsigned *out)
{
    unsigned v = 0;
    if (each(w, "versions", one_version, &v) != 0)
        return -1;
    if (!v)
        return bad(w, "versions: empty");
    *out = v;
    return 0;
}

/* ciphers: "A:B" or ["A", "B"] (OpenSSL names, as ssl:cipher_suites(openssl) gives them). */
typedef struct {
    char *all;
    size_t len;
} joined;

static int
one_cipher(walk *w, void *ud)
{
    joined *j = ud;
    char *one = NULL;
    if (get_string(w, "ciphers", &one) != 0)
        return bad(w, "ciphers: a string or a list of strings (OpenSSL names) is expected; cipher maps cannot be "
                      "honoured");
    char *nb = realloc(j->all, j->len + strlen(one) + 2);
    if (!nb) {
        free(one);
        return bad(w, "out of memory");
    }
    j->all = nb;
    j->len += (size_t)sprintf(nb + j->len, "%s%s", j->len ? ":" : "", one);
    free(one);
    return 0;
}

static int
get_ciphers(walk *w, char **out)
{
    int type, size;
    if (ei_get_type(w->buf, &w->idx, &type, &size) != 0)
        return bad(w, "ciphers: malformed");
    if (type != ERL_LIST_EXT)
        return get_string(w, "ciphers", out);
    joined j = {calloc(1, 1), 0};
    if (!j.all)
        return bad(w, "out of memory");
    if (each(w, "ciphers", one_cipher, &j) != 0) {
        free(j.all);
        return -1;
    }
    free(*out);
    *out = j.all;
    return 0;
}

/* Options we cannot honour, and why (anything not named anywhere is refused as unknown). */
static const struct {
    const char *key, *why;
} refused[] = {
    {"verify_fun", "a fun runs only on BEAM"},
    {"password", "encrypted private keys are not supported; use an unencrypted key file"},
    {"crl_check", "certificate revocation lists are not checked"},
    {"crl_cache", "certificate revocation lists are not checked"},
    {"dhfile", "DH parameter files are not supported (ECDHE is used)"},
    {"cert", "give the certificate as certfile"},
    {"key", "give the key as keyfile"},
    {"cacerts", "give the CAs as cacertfile"},
    {"certs_keys", "give one certfile and keyfile"},
    {"partial_chain", "a fun runs only on BEAM"},
    {"customize_hostname_check", "a fun runs only on BEAM"},
    {"user_lookup_fun", "a fun runs only on BEAM"},
    {"psk_identity", "pre-shared keys are not supported"},
    {"signature_algs", "not supported"},
    {"eccs", "not supported"},
    {"honor_cipher_order", "not supported"},
    {"client_renegotiation", "renegotiation is always off"},
};

typedef struct {
    cnode__tls_side *side;
    int server;
} opt_ud;

static int
one_option(walk *w, void *ud)
{
    cnode__tls_side *s = ((opt_ud *)ud)->side;
    int server = ((opt_ud *)ud)->server;
    int arity;
    char key[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(w->buf, &w->idx, &arity) != 0 || arity != 2 || get_atom(w, key) != 0)
        return bad(w, "each option must be a {Key, Value} tuple");
    if (strcmp(key, "certfile") == 0)
        return get_string(w, key, &s->certfile);
    if (strcmp(key, "keyfile") == 0)
        return get_string(w, key, &s->keyfile);
    if (strcmp(key, "cacertfile") == 0)
        return get_string(w, key, &s->cafile);
    if (strcmp(key, "verify") == 0) {
        char a[MAXATOMLEN_UTF8];
        if (get_atom(w, a) != 0 || (strcmp(a, "verify_peer") != 0 && strcmp(a, "verify_none") != 0))
            return bad(w, "verify: verify_peer or verify_none is expected");
        s->verify = strcmp(a, "verify_peer") == 0 ? CNODE_TLS_VERIFY_PEER : CNODE_TLS_VERIFY_NONE;
        return 0;
    }
    if (strcmp(key, "fail_if_no_peer_cert") == 0) {
        if (!server)
            return bad(w, "fail_if_no_peer_cert is a server option");
        return get_bool(w, key, &s->fail_if_no_peer_cert);
    }
    if (strcmp(key, "versions") == 0)
        return get_versions(w, &s->versions);
    if (strcmp(key, "ciphers") == 0)
        return get_ciphers(w, &s->ciphers);
    if (strcmp(key, "server_name_indication") == 0) {
        if (server)
            return bad(w, "server_name_indication is a client option");
        int type, size;
        ei_get_type(w->buf, &w->idx, &type, &size);
        if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_UTF8_EXT || type == ERL_ATOM_UTF8_EXT || type == ERL_SMALL_ATOM_EXT) {
            char a[MAXATOMLEN_UTF8];
            get_atom(w, a);
            if (strcmp(a, "disable") != 0)
                return bad(w, "server_name_indication: a host name or disable is expected");
            s->sni_disable = 1;
            free(s->sni);
            s->sni = NULL;
            return 0;
        }
        s->sni_disable = 0;
        return get_string(w, key, &s->sni);
    }
    if (strcmp(key, "depth") == 0) {
        long d;
        if (ei_decode_long(w->buf, &w->idx, &d) != 0 || d < 0 || d > 100)
            return bad(w, "depth: an integer 0..100 is expected");
        s->depth = (int)d;
        return 0;
    }
    if (strcmp(key, "secure_renegotiate") == 0 || strcmp(key, "reuse_sessions") == 0) {
        int b;
        return get_bool(w, key, &b); /* renegotiation is always off; sessions are not resumed */
    }
    if (strcmp(key, "hibernate_after") == 0 || strcmp(key, "log_level") == 0)
        return ei_skip_term(w->buf, &w->idx) == 0 ? 0 : bad(w, "%s: malformed", key);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strcmp(key, refused[i].key) == 0)
            return bad(w, "%s cannot be honoured (%s)", key, refused[i].why);
    return bad(w, "unknown option %s", key);
}

static int
one_side(walk *w, void *ud)
{
    cnode__tls_side **sides = ud;
    int arity;
    char side[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(w->buf, &w->idx, &arity) != 0 || arity != 2 || get_atom(w, side) != 0 ||
        (strcmp(side, "server") != 0 && strcmp(side, "client") != 0))
        return bad(w, "each element must be {server, Opts} or {client, Opts}");
    opt_ud o = {sides[strcmp(side, "client") == 0], strcmp(side, "server") == 0};
    w->side = o.server ? "server" : "client";
    if (each(w, "the options", one_option, &o) != 0)
        return -1;
    w->side = NULL;
    return 0;
}

int
cnode__tls_optfile_parse(const char *text, cnode__tls_side *server, cnode__tls_side *client, char *why, size_t cap)
{
    ei_x_buff x;
    if (ei_x_new(&x) != 0) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    cnode_error err = {0};
    walk w = {.why = why, .cap = cap};
    int rc = -1;
    if (cnode_term_parse(text, &x, &err) != 0) {
        bad(&w, "not an Erlang term: %s", err.message);
        goto out;
    }
    w.buf = x.buff;
    cnode__tls_side *sides[2] = {server, client};
    rc = each(&w, "the file (a list [{server, Opts}, {client, Opts}] is expected)", one_side, sides);
out:
    cnode_error_clear(&err);
    ei_x_free(&x);
    return rc;
}
