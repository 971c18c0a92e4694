/* The transport under the connection layer: plain TCP, or TLS as OTP's inet_tls_dist runs it
 * (protocol.md §10): TCP connect, TLS (the dialler sends SNI = the peer's host), then the
 * ordinary handshake inside TLS with 4-byte length prefixes, then the usual frames.
 *
 * OpenSSL (libssl.so.3) is loaded with dlopen by the first TLS node, never by a plain one: a
 * plain node neither maps nor initialises it. Sessions are non-blocking on the loop: a custom
 * BIO moves the bytes with recv/send(MSG_DONTWAIT | MSG_NOSIGNAL), so a dead peer never raises
 * SIGPIPE and whether the descriptor is blocking does not matter.
 *
 * Threads: one SSL object is never used by two threads at once. Each session has its own
 * mutex (t->lock), taken around every SSL_* call on it and innermost of all locks: writers
 * take it inside peer->wlock, the loop's reads inside nothing. No lock is held while waiting:
 * every call returns at once (EAGAIN when the socket has nothing or is full).
 *
 * Writes: SSL_write with partial writes and moving buffers allowed. A write OpenSSL could not
 * finish keeps its record inside the session and reports EAGAIN; the caller queues the same
 * bytes and offers them again (with more after them), which is what OpenSSL asks. Each
 * SSL_write takes min(bytes offered, RECORD) so that the retry is never shorter.
 * Renegotiation is off, so a write never needs the socket to be readable; session tickets are
 * off, so a read never has to write (TLS 1.3 KeyUpdate aside: its answer goes with the next
 * write, the next tick at the latest). */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/internal.h"

#define RECORD 16384 /* plaintext per SSL_write: one TLS record */

/* ---- libssl, loaded on first use ---------------------------------------------------------- */

#define SSL_FNS(X)                                                                                                                 \
    X(OPENSSL_init_ssl)                                                                                                            \
    X(TLS_method)                                                                                                                  \
    X(SSL_CTX_new)                                                                                                                 \
    X(SSL_CTX_free)                                                                                                                \
    X(SSL_CTX_ctrl)                                                                                                                \
    X(SSL_CTX_set_options)                                                                                                         \
    X(SSL_CTX_use_certificate_chain_file)                                                                                          \
    X(SSL_CTX_use_PrivateKey_file)                                                                                                 \
    X(SSL_CTX_check_private_key)                                                                                                   \
    X(SSL_CTX_load_verify_locations)                                                                                               \
    X(SSL_CTX_set_verify)                                                                                                          \
    X(SSL_CTX_set_verify_depth)                                                                                                    \
    X(SSL_CTX_set_cipher_list)                                                                                                     \
    X(SSL_CTX_set_ciphersuites)                                                                                                    \
    X(SSL_CTX_set_num_tickets)                                                                                                     \
    X(SSL_new)                                                                                                                     \
    X(SSL_free)                                                                                                                    \
    X(SSL_ctrl)                                                                                                                    \
    X(SSL_set_bio)                                                                                                                 \
    X(SSL_set_connect_state)                                                                                                       \
    X(SSL_set_accept_state)                                                                                                        \
    X(SSL_do_handshake)                                                                                                            \
    X(SSL_read)                                                                                                                    \
    X(SSL_write)                                                                                                                   \
    X(SSL_get_error)                                                                                                               \
    X(SSL_pending)                                                                                                                 \
    X(SSL_set1_host)                                                                                                               \
    X(SSL_get0_param)                                                                                                              \
    X(SSL_get_verify_result)                                                                                                       \
    X(SSL_get_rbio)                                                                                                                \
    X(SSL_get_ex_data_X509_STORE_CTX_idx)                                                                                          \
    X(SSL_set_verify)                                                                                                              \
    X(X509_STORE_CTX_get_ex_data)                                                                                                  \
    X(X509_STORE_CTX_get_error)                                                                                                    \
    X(X509_STORE_CTX_get_error_depth)                                                                                              \
    X(X509_STORE_CTX_get_current_cert)                                                                                             \
    X(X509_STORE_CTX_set_error)                                                                                                    \
    X(X509_check_host)                                                                                                             \
    X(SSL_get_version)                                                                                                             \
    X(SSL_get_current_cipher)                                                                                                      \
    X(SSL_CIPHER_get_name)                                                                                                         \
    X(X509_VERIFY_PARAM_set1_ip_asc)                                                                                               \
    X(X509_verify_cert_error_string)                                                                                               \
    X(ERR_get_error)                                                                                                               \
    X(ERR_peek_error)                                                                                                              \
    X(ERR_clear_error)                                                                                                             \
    X(ERR_reason_error_string)                                                                                                     \
    X(BIO_meth_new)                                                                                                                \
    X(BIO_meth_set_write)                                                                                                          \
    X(BIO_meth_set_read)                                                                                                           \
    X(BIO_meth_set_ctrl)                                                                                                           \
    X(BIO_get_new_index)                                                                                                           \
    X(BIO_new)                                                                                                                     \
    X(BIO_set_data)                                                                                                                \
    X(BIO_get_data)                                                                                                                \
    X(BIO_set_init)                                                                                                                \
    X(BIO_set_flags)                                                                                                               \
    X(BIO_clear_flags)

static struct {
#define FIELD(f) __typeof__(&f) f;
    SSL_FNS(FIELD)
#undef FIELD
    BIO_METHOD *bio;
} P;
static int p_ok;
static char p_err[160];
static pthread_once_t p_once = PTHREAD_ONCE_INIT;

/* ---- sessions ------------------------------------------------------------------------------- */

struct cnode__tls_ctx {
    SSL_CTX *server, *client;
    int client_verify; /* dialling checks the peer's certificate */
    int sni_disable;   /* dialling sends no SNI and checks no host */
    char *sni;         /* dialling: this name instead of the dialled host */
};

struct cnode__tls {
    pthread_mutex_t lock; /* every SSL_* call on ssl */
    SSL *ssl;
    int fd;
    int sys_errno; /* what recv/send said last (BIO) */
    int mute;      /* accepting: the peer's certificate failed; its alert is not sent (BIO) */
    int failed;
    char literal[INET6_ADDRSTRLEN]; /* dialling an address literal, verifying: the literal ("" else) */
    char why[200];                  /* "TLS: ..." once failed */
    char scratch[RECORD];           /* a record's plaintext gathered from several pieces */
};

static int
bio_write(BIO *b, const char *data, int len)
{
    cnode__tls *t = P.BIO_get_data(b);
    P.BIO_clear_flags(b, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY);
    if (t->mute)
        return len;
    ssize_t n;
    do
        n = send(t->fd, data, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        t->sys_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            P.BIO_set_flags(b, BIO_FLAGS_WRITE | BIO_FLAGS_SHOULD_RETRY);
    }
    return (int)n;
}

static int
bio_read(BIO *b, char *data, int len)
{
    cnode__tls *t = P.BIO_get_data(b);
    P.BIO_clear_flags(b, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY);
    ssize_t n;
    do
        n = recv(t->fd, data, (size_t)len, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        t->sys_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            P.BIO_set_flags(b, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY);
    }
    return (int)n;
}

/* Accepting, a certificate that fails verification: the connection is closed without telling
 * the stranger why (as a wrong cookie is: the socket closes), and our log line names the reason.
 * This also keeps a BEAM dialler quiet: it logs every TLS alert it receives as a notice. */
static int
verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok) {
        SSL *ssl = P.X509_STORE_CTX_get_ex_data(x, P.SSL_get_ex_data_X509_STORE_CTX_idx());
        BIO *b = ssl ? P.SSL_get_rbio(ssl) : NULL;
        cnode__tls *t = b ? P.BIO_get_data(b) : NULL;
        if (t)
            t->mute = 1;
    }
    return ok;
}

/* Dialling an address literal (a node named x@::1 or x@10.0.0.3), the certificate must name
 * it: as an IP address entry (OpenSSL's check, X509_VERIFY_PARAM_set1_ip_asc), or as a DNS
 * entry spelling the literal as the node name writes it, which is what OTP checks: its
 * inet_tls_dist dials with the host part as server_name_indication and ssl matches that string
 * against the DNS entries only. A certificate made for BEAM peers (DNS:::1) is taken as BEAM
 * takes it; the chain is verified either way and the subject's CN never counts (OTP does not
 * match an address against the CN either). */
static int
literal_cb(int ok, X509_STORE_CTX *x)
{
    if (ok || P.X509_STORE_CTX_get_error(x) != X509_V_ERR_IP_ADDRESS_MISMATCH || P.X509_STORE_CTX_get_error_depth(x) != 0)
        return ok;
    SSL *ssl = P.X509_STORE_CTX_get_ex_data(x, P.SSL_get_ex_data_X509_STORE_CTX_idx());
    BIO *b = ssl ? P.SSL_get_rbio(ssl) : NULL;
    cnode__tls *t = b ? P.BIO_get_data(b) : NULL;
    X509 *cert = P.X509_STORE_CTX_get_current_cert(x);
    if (!t || !*t->literal || !cert || P.X509_check_host(cert, t->literal, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) != 1)
        return ok;
    P.X509_STORE_CTX_set_error(x, X509_V_OK);
    return 1;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static void
p_load(void)
{
    void *h = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(p_err, sizeof p_err, "TLS: cannot load OpenSSL (libssl.so.3): %s", dlerror());
        return;
    }
#define LOAD(f)                                                                                                                    \
    if (!(*(void **)&P.f = dlsym(h, #f))) {                                                                                        \
        snprintf(p_err, sizeof p_err, "TLS: OpenSSL lacks %s", #f);                                                                \
        return;                                                                                                                    \
    }
    SSL_FNS(LOAD)
#undef LOAD
    if (!P.OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL)) {
        snprintf(p_err, sizeof p_err, "TLS: OpenSSL failed to initialise");
        return;
    }
    P.bio = P.BIO_meth_new(P.BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cnode socket");
    if (!P.bio || !P.BIO_meth_set_write(P.bio, bio_write) || !P.BIO_meth_set_read(P.bio, bio_read) ||
        !P.BIO_meth_set_ctrl(P.bio, bio_ctrl)) {
        snprintf(p_err, sizeof p_err, "TLS: OpenSSL BIO set-up failed");
        return;
    }
    p_ok = 1;
}

/* The first error on this thread's OpenSSL queue, as text; the queue is emptied. */
static const char *
ssl_reason(void)
{
    unsigned long e = P.ERR_get_error();
    P.ERR_clear_error();
    const char *r = e ? P.ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

/* ---- node configuration ---------------------------------------------------------------------- */

static int
cfg_fail(cnode_error *err, const char *side, const char *what, const char *detail)
{
    cnode__seterr(err, CNODE_ECONFIG, NULL, "TLS (%s): %s%s%s", side, what, detail ? ": " : "", detail ? detail : "");
    return CNODE_ECONFIG;
}

static int
ctx_build(SSL_CTX **out, const cnode__tls_side *s, int server, cnode_error *err)
{
    const char *side = server ? "accepting" : "dialling";
    SSL_CTX *ctx = P.SSL_CTX_new(P.TLS_method());
    if (!ctx)
        return cfg_fail(err, side, "cannot make an SSL_CTX", ssl_reason());
    *out = ctx;
    unsigned v = s->versions ? s->versions : CNODE_TLS_V1_2; /* OTP 25's default */
    P.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, (v & CNODE_TLS_V1_2) ? TLS1_2_VERSION : TLS1_3_VERSION, NULL);
    P.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, (v & CNODE_TLS_V1_3) ? TLS1_3_VERSION : TLS1_2_VERSION, NULL);
    P.SSL_CTX_ctrl(ctx, SSL_CTRL_MODE,
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS, NULL);
    P.SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    P.SSL_CTX_set_num_tickets(ctx, 0);
    if (s->certfile) {
        const char *key = s->keyfile ? s->keyfile : s->certfile;
        if (P.SSL_CTX_use_certificate_chain_file(ctx, s->certfile) != 1)
            return cfg_fail(err, side, s->certfile, ssl_reason());
        if (P.SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            return cfg_fail(err, side, key, ssl_reason());
        if (P.SSL_CTX_check_private_key(ctx) != 1)
            return cfg_fail(err, side, "the key does not match the certificate", ssl_reason());
    } else if (server) {
        return cfg_fail(err, side, "a certificate is needed to accept TLS connections (certfile, --tls-cert)", NULL);
    } else if (s->keyfile) {
        return cfg_fail(err, side, "keyfile without certfile", NULL);
    }
    if (s->cafile && P.SSL_CTX_load_verify_locations(ctx, s->cafile, NULL) != 1)
        return cfg_fail(err, side, s->cafile, ssl_reason());
    int verify = s->verify >= 0 ? s->verify : s->cafile ? CNODE_TLS_VERIFY_PEER : CNODE_TLS_VERIFY_NONE;
    if (verify == CNODE_TLS_VERIFY_PEER) {
        if (!s->cafile)
            return cfg_fail(err, side, "verify_peer needs a CA file (cacertfile, --tls-ca)", NULL);
        int mode = SSL_VERIFY_PEER;
        if (server && s->fail_if_no_peer_cert != 0)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        P.SSL_CTX_set_verify(ctx, mode, server ? verify_cb : NULL);
    } else {
        P.SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (s->depth >= 0)
        P.SSL_CTX_set_verify_depth(ctx, s->depth);
    if (s->ciphers) {
        /* TLS_* names are TLS 1.3 suites, the rest TLS 1.2 ciphers */
        char *v12 = calloc(1, strlen(s->ciphers) + 1), *v13 = calloc(1, strlen(s->ciphers) + 1);
        char *copy = strdup(s->ciphers), *save = NULL;
        if (!v12 || !v13 || !copy) {
            free(v12), free(v13), free(copy);
            return cfg_fail(err, side, "out of memory", NULL);
        }
        for (char *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
            char *d = strncmp(tok, "TLS_", 4) == 0 ? v13 : v12;
            if (*d)
                strcat(d, ":");
            strcat(d, tok);
        }
        int ok = (!*v12 || P.SSL_CTX_set_cipher_list(ctx, v12) == 1) && (!*v13 || P.SSL_CTX_set_ciphersuites(ctx, v13) == 1);
        free(v12), free(v13), free(copy);
        if (!ok)
            return cfg_fail(err, side, "ciphers", ssl_reason());
    }
    return 0;
}

static int
tls_wanted(const cnode_node_opts *o)
{
    const cnode_tls_opts *t = &o->tls;
    return o->proto_dist == CNODE_PROTO_INET_TLS || o->proto_dist == CNODE_PROTO_INET6_TLS || t->certfile || t->keyfile ||
           t->cafile || t->optfile || t->verify || t->server_name || t->versions || t->ciphers;
}

static char *
dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The optfile's text (at most 1 MiB). */
static char *
read_file(const char *path, char *why, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, cap, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t len = 0, room = 4096;
    char *buf = malloc(room);
    while (buf) {
        size_t n = fread(buf + len, 1, room - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (room - len - 1 == 0) {
            if (room >= (1u << 20)) {
                free(buf);
                buf = NULL;
                snprintf(why, cap, "%s is over 1 MiB", path);
                break;
            }
            char *nb = realloc(buf, room * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
            room *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = 0;
    else if (!*why)
        snprintf(why, cap, "out of memory");
    return buf;
}

void
cnode__tls_ctx_free(cnode__tls_ctx *t)
{
    if (!t)
        return;
    if (t->server)
        P.SSL_CTX_free(t->server);
    if (t->client)
        P.SSL_CTX_free(t->client);
    free(t->sni);
    free(t);
}

int
cnode__tls_setup(cnode_node *node, const cnode_node_opts *opts, cnode_error *err)
{
    if (!tls_wanted(opts))
        return 0;
    if (opts->proto_dist == CNODE_PROTO_INET_TCP || opts->proto_dist == CNODE_PROTO_INET6_TCP) {
        cnode__seterr(err, CNODE_ECONFIG, NULL, "TLS options given with a plain-TCP proto_dist");
        return CNODE_ECONFIG;
    }
    const cnode_tls_opts *o = &opts->tls;
    if (o->verify < 0 || o->verify > CNODE_TLS_VERIFY_NONE || (o->versions & ~3u)) {
        cnode__seterr(err, CNODE_ECONFIG, NULL, "TLS: bad verify or versions value");
        return CNODE_ECONFIG;
    }
    pthread_once(&p_once, p_load);
    if (!p_ok) {
        cnode__seterr(err, CNODE_ECONFIG, NULL, "%s", p_err);
        return CNODE_ECONFIG;
    }
    cnode__tls_side side[2]; /* server, client */
    for (int i = 0; i < 2; i++) {
        cnode__tls_side *s = &side[i];
        cnode__tls_side_init(s);
        s->certfile = dup_or_null(o->certfile);
        s->keyfile = dup_or_null(o->keyfile);
        s->cafile = dup_or_null(o->cafile);
        s->ciphers = dup_or_null(o->ciphers);
        s->verify = o->verify == CNODE_TLS_VERIFY_DEFAULT ? -1 : o->verify;
        s->versions = o->versions;
        if (i == 1 && o->server_name) {
            s->sni_disable = !*o->server_name;
            s->sni = *o->server_name ? strdup(o->server_name) : NULL;
        }
    }
    int rc = 0;
    if (o->optfile) {
        char why[300] = "";
        char *text = read_file(o->optfile, why, sizeof why);
        if (!text || cnode__tls_optfile_parse(text, &side[0], &side[1], why, sizeof why) != 0) {
            cnode__seterr(err, CNODE_ECONFIG, NULL, "TLS: ssl_dist_optfile %s: %s", o->optfile, why);
            rc = CNODE_ECONFIG;
        }
        free(text);
    }
    cnode__tls_ctx *t = rc ? NULL : calloc(1, sizeof *t);
    if (!rc && !t) {
        cnode__seterr(err, CNODE_ENOMEM, NULL, "out of memory");
        rc = CNODE_ENOMEM;
    }
    if (!rc && (rc = ctx_build(&t->server, &side[0], 1, err)) == 0)
        rc = ctx_build(&t->client, &side[1], 0, err);
    if (!rc) {
        int v = side[1].verify >= 0 ? side[1].verify : side[1].cafile ? CNODE_TLS_VERIFY_PEER : CNODE_TLS_VERIFY_NONE;
        t->client_verify = v == CNODE_TLS_VERIFY_PEER;
        t->sni_disable = side[1].sni_disable;
        t->sni = side[1].sni;
        side[1].sni = NULL;
        node->tls = t;
    } else {
        cnode__tls_ctx_free(t);
    }
    cnode__tls_side_free(&side[0]);
    cnode__tls_side_free(&side[1]);
    return rc;
}

/* ---- one connection ---------------------------------------------------------------------------- */

int
cnode__tls_conn_new(cnode_node *node, cnode__conn *c)
{
    cnode__tls_ctx *x = node->tls;
    cnode__tls *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    t->fd = c->fd;
    pthread_mutex_init(&t->lock, NULL);
    t->ssl = P.SSL_new(c->outgoing ? x->client : x->server);
    BIO *b = t->ssl ? P.BIO_new(P.bio) : NULL;
    if (!b) {
        if (t->ssl)
            P.SSL_free(t->ssl);
        P.ERR_clear_error();
        pthread_mutex_destroy(&t->lock);
        free(t);
        return -1;
    }
    P.BIO_set_data(b, t);
    P.BIO_set_init(b, 1);
    P.SSL_set_bio(t->ssl, b, b);
    if (c->outgoing) {
        P.SSL_set_connect_state(t->ssl);
        const char *host = x->sni ? x->sni : c->host;
        unsigned char ip[16];
        int literal = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
        if (!x->sni_disable) {
            if (!literal) /* RFC 6066: SNI names a host, never an address */
                P.SSL_ctrl(t->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, (void *)host);
            if (x->client_verify) {
                int ok = literal ? P.X509_VERIFY_PARAM_set1_ip_asc(P.SSL_get0_param(t->ssl), host) : P.SSL_set1_host(t->ssl, host);
                if (ok != 1) {
                    P.ERR_clear_error();
                    P.SSL_free(t->ssl);
                    pthread_mutex_destroy(&t->lock);
                    free(t);
                    return -1;
                }
                if (literal && strlen(host) < sizeof t->literal) {
                    strcpy(t->literal, host);
                    P.SSL_set_verify(t->ssl, SSL_VERIFY_PEER, literal_cb);
                }
            }
        }
    } else {
        P.SSL_set_accept_state(t->ssl);
    }
    c->tls = t;
    return 0;
}

void
cnode__tls_conn_free(cnode__conn *c)
{
    cnode__tls *t = c->tls;
    if (!t)
        return;
    c->tls = NULL;
    P.SSL_free(t->ssl);
    P.ERR_clear_error();
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Why a session failed, once (t->lock held, the OpenSSL error queue not yet read). */
static void
fail_why(cnode__tls *t, int handshake, int sslerr)
{
    if (t->failed)
        return;
    t->failed = 1;
    long vr = P.SSL_get_verify_result(t->ssl);
    unsigned long e = P.ERR_peek_error();
    int reason = e ? ERR_GET_REASON(e) : 0;
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK) {
        snprintf(t->why, sizeof t->why, "TLS: peer certificate refused: %s", P.X509_verify_cert_error_string(vr));
    } else if (sslerr == SSL_ERROR_SSL) {
        const char *r = ssl_reason();
        int alert = strstr(r, "alert") != NULL;
        int plain = reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
                    reason == SSL_R_RECORD_LENGTH_MISMATCH || reason == SSL_R_UNEXPECTED_MESSAGE || reason == SSL_R_HTTP_REQUEST;
        snprintf(t->why, sizeof t->why, "TLS: %s%s%s", alert ? "refused by the peer: " : "", r,
                 plain ? " (does the peer run plain TCP?)" : "");
    } else if (handshake) {
        snprintf(t->why, sizeof t->why, "TLS: connection closed in the TLS handshake%s%s",
                 t->sys_errno && sslerr == SSL_ERROR_SYSCALL ? ": " : " (does the peer run plain TCP?)",
                 t->sys_errno && sslerr == SSL_ERROR_SYSCALL ? strerror(t->sys_errno) : "");
    } else {
        snprintf(t->why, sizeof t->why, "TLS: %s", t->sys_errno ? strerror(t->sys_errno) : "connection closed");
    }
    P.ERR_clear_error();
}

int
cnode__tls_step(cnode__conn *c, int *want_write)
{
    cnode__tls *t = c->tls;
    *want_write = 0;
    pthread_mutex_lock(&t->lock);
    P.ERR_clear_error();
    t->sys_errno = 0;
    int r = P.SSL_do_handshake(t->ssl);
    int rc = 1;
    if (r != 1) {
        int e = P.SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            *want_write = e == SSL_ERROR_WANT_WRITE;
            rc = 0;
        } else {
            fail_why(t, 1, e);
            rc = -1;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

const char *
cnode__tls_describe(cnode__conn *c, char *buf, size_t cap)
{
    cnode__tls *t = c->tls;
    if (!t)
        return "tcp";
    pthread_mutex_lock(&t->lock);
    const SSL_CIPHER *ci = P.SSL_get_current_cipher(t->ssl);
    snprintf(buf, cap, "%s %s", P.SSL_get_version(t->ssl), ci ? P.SSL_CIPHER_get_name(ci) : "?");
    pthread_mutex_unlock(&t->lock);
    return buf;
}

const char *
cnode__tx_error(const cnode__conn *c)
{
    cnode__tls *t = c->tls;
    if (!t)
        return NULL;
    pthread_mutex_lock(&t->lock); /* a writer may be failing it now; why is written once, under the lock */
    int failed = t->failed;
    pthread_mutex_unlock(&t->lock);
    return failed ? t->why : NULL;
}

ssize_t
cnode__tx_recv(cnode__conn *c, void *buf, size_t len)
{
    cnode__tls *t = c->tls;
    if (!t) {
        ssize_t n;
        do
            n = recv(c->fd, buf, len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        return n;
    }
    pthread_mutex_lock(&t->lock);
    if (t->failed) {
        pthread_mutex_unlock(&t->lock);
        errno = EPROTO;
        return -1;
    }
    P.ERR_clear_error();
    t->sys_errno = 0;
    int r = P.SSL_read(t->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    ssize_t out = r;
    int err = 0;
    if (r <= 0) {
        int e = P.SSL_get_error(t->ssl, r);
        out = -1;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            err = EAGAIN;
        } else if (e == SSL_ERROR_ZERO_RETURN) {
            out = 0; /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        } else if (e == SSL_ERROR_SYSCALL && t->sys_errno) {
            err = t->sys_errno;
            P.ERR_clear_error();
        } else {
            fail_why(t, 0, e);
            err = EPROTO;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (out < 0)
        errno = err;
    return out;
}

int
cnode__tx_buffered(cnode__conn *c)
{
    cnode__tls *t = c->tls;
    if (!t)
        return 0;
    pthread_mutex_lock(&t->lock);
    int n = t->failed ? 0 : P.SSL_pending(t->ssl);
    pthread_mutex_unlock(&t->lock);
    return n > 0;
}

ssize_t
cnode__tx_writev(cnode__conn *c, const struct iovec *iov, int iovcnt)
{
    cnode__tls *t = c->tls;
    if (!t) {
        struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n;
        do
            n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        return n;
    }
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    pthread_mutex_lock(&t->lock);
    size_t done = 0;
    int err = 0, vi = 0;
    size_t voff = 0; /* in iov[vi] */
    if (t->failed)
        err = EPIPE;
    while (!err && done < total) {
        while (vi < iovcnt && voff == iov[vi].iov_len) {
            vi++;
            voff = 0;
        }
        /* min(left, RECORD), whatever the pieces: a retry after EAGAIN offers at least as much */
        size_t n = total - done < RECORD ? total - done : RECORD;
        const char *p;
        if (iov[vi].iov_len - voff >= n) {
            p = (const char *)iov[vi].iov_base + voff;
        } else {
            size_t got = 0;
            for (int j = vi, first = 1; got < n; j++, first = 0) {
                size_t off = first ? voff : 0, take = iov[j].iov_len - off;
                if (take > n - got)
                    take = n - got;
                memcpy(t->scratch + got, (const char *)iov[j].iov_base + off, take);
                got += take;
            }
            p = t->scratch;
        }
        P.ERR_clear_error();
        t->sys_errno = 0;
        int r = P.SSL_write(t->ssl, p, (int)n);
        if (r <= 0) {
            int e = P.SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                err = EAGAIN;
            } else if (e == SSL_ERROR_SYSCALL && t->sys_errno) {
                err = t->sys_errno;
                P.ERR_clear_error();
            } else {
                fail_why(t, 0, e);
                err = EPIPE;
            }
            break;
        }
        done += (size_t)r;
        /* move the cursor r bytes on */
        for (size_t left = (size_t)r; left;) {
            size_t here = iov[vi].iov_len - voff;
            if (left < here) {
                voff += left;
                left = 0;
            } else {
                left -= here;
                vi++;
                voff = 0;
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (done)
        return (ssize_t)done;
    if (total == 0)
        return 0;
    errno = err;
    return -1;
}
