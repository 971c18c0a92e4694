/* Small term helpers for the runtime (encoded terms without the 131). */
#ifndef CNODE_TERMS_H
#define CNODE_TERMS_H
#include <stddef.h>
#include <ei.h>

/* Append an atom the way OTP 25 encodes it (UTF-8 atom tags). 0 or -1. */
int cnode__x_atom(ei_x_buff *x, const char *name);
/* Write atom `name` (< 256 bytes) into buf as SMALL_ATOM_UTF8; returns the length. */
size_t cnode__enc_atom(char *buf, const char *name);
/* 1 if the term (no 131) is the atom `name`. */
int cnode__term_is_atom(const char *term, size_t len, const char *name);
#endif
