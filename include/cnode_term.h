/* libcnode — Erlang term text: a parser from Erlang term syntax to ei
 * encoding, a printer from ei encoding to the text OTP 25 prints with
 * io_lib:format("~0p", [T]), and a builder with holes. (Module names become
 * atoms with cnode_module_atom, <cnode.h>.)
 *
 * No I/O, no globals; any thread may call any of them, and floats read and
 * print the same whatever setlocale() says. Like the rest of the API they
 * return 0 or a negative CNODE_E... code and, given a cnode_error, fill it
 * (err->message says what and where). Pointers are borrowed for the call
 * unless the comment says "free() it". None of them prints, exits or aborts
 * on bad input.
 */
#ifndef CNODE_TERM_H
#define CNODE_TERM_H

#include <stddef.h>
#include <ei.h>

#include "cnode.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parse Erlang term text (one term, optional trailing '.' and whitespace) and
 * append its encoding (no 131 version byte is added; callers use
 * ei_x_new_with_version first if they want one) to out. Returns 0;
 * CNODE_EBADMSG for bad text, with err->message naming the byte offset (e.g.
 * "at offset 3: unterminated list"); CNODE_ENOMEM; CNODE_EINVAL for a NULL
 * text or out. On failure out->index is where it was.
 *
 * text: NUL-terminated UTF-8. out: made with ei_x_new or ei_x_new_with_version.
 * err: NULL, or a cnode_error (cnode_error_clear it after).
 * Accepted, as erl_parse:parse_term/1 reads it: bare atoms (reserved words
 * such as 'and' must be quoted) and quoted atoms with escapes; integers of any
 * size, 16#ff base notation, 1_000 digit groups, $c and $\n characters, an
 * optional sign; floats (1.5, -2.0e10); strings with escapes, adjacent ones
 * joined; binaries of integer segments (V or V:Size bits) and string
 * segments ("..", or ".."/utf8); lists, improper lists, tuples, maps; %
 * comments. Not accepted: pids, refs, ports, funs, records, expressions,
 * duplicate map keys, nesting deeper than 1000 levels, an integer literal
 * over 65536 digits. The encoding is term_to_binary/1's (lists of bytes
 * become STRING_EXT), except that atoms are UTF-8 and a map of more than 32
 * keys is written in the reverse of its text order, so that printing it gives
 * the text back (see cnode_term_print). */
int cnode_term_parse(const char *text, ei_x_buff *out, cnode_error *err);

/* Print an encoded term (buf[0..len), with or without the leading 131) as
 * OTP 25's io_lib:format("~0p", [T]) prints it into *out, a malloc'd
 * NUL-terminated string (free() it). Returns 0; CNODE_EBADMSG for a term
 * binary_to_term would refuse, a truncated one, or bytes after it (err->message
 * names the rule); CNODE_ENOMEM; CNODE_EINVAL for a NULL buf or out. *out is
 * NULL on failure. Reads only buf[0, len).
 *
 * io_lib's characters come out as UTF-8 (it writes only characters below
 * 256; a binary's bytes 160..255 print as those Latin-1 characters). Strings
 * and binaries are printable for characters 32..126, 160..255 and \n \r \t
 * \v \b \f \e. Maps of up to 32 keys print in term order (integers before
 * floats); larger maps print in the reverse of their encoding order, which is
 * what BEAM prints for a map that term_to_binary encoded. Pids, ports, refs
 * and funs as map keys sort by class as BEAM does, but among themselves only
 * consistently, not in BEAM's order.
 * Where BEAM's text depends on its node table the printer writes the node's
 * name in place of BEAM's node index:
 *   <node@host.85.0>  #Ref<node@host.A.B.C>  #Port<node@host.5>
 * (BEAM: <0.85.0> for its own pids, <N.85.0> for others). Funs print as BEAM
 * does: #Fun<Module.OldIndex.OldUniq>, fun M:F/A.
 * CNODE_EBADMSG also for: compressed terms (tag 80), atom cache refs, nesting
 * deeper than 1024 or more than 2^24 elements (the term reader's limits).
 * Bignums print in time below quadratic in their size (about n^1.6: a 100 kB
 * bignum in under a second, a 1 MB one in tens of seconds). */
int cnode_term_print(const char *buf, size_t len, char **out, cnode_error *err);

/* Build a term from Erlang term text with holes, in the manner of ei_x_format
 * but with all of this parser's syntax (maps, binaries, bignums...), and
 * append its encoding to out (no 131 added). Holes take the next argument:
 *   ~i long          ~u unsigned long     ~l long long     ~f double
 *   ~a const char * (an atom, UTF-8)      ~s const char * (a string: a list of
 *   code points, UTF-8 decoded)           ~b const char * (a binary of its bytes)
 *   ~B const void *, size_t (a binary)    ~p const erlang_pid *
 *   ~r const erlang_ref *                 ~t const char *, size_t (an encoded
 *   term, with or without 131, copied after a bounds check)
 * Holes may stand wherever a term may: "{~a, [~i, ~i | ~t], #{~a => ~b}}".
 * Returns 0, or CNODE_EBADMSG (err->message names the offset in fmt or the
 * hole; a bad hole argument is an error), CNODE_ENOMEM, CNODE_EINVAL, with
 * out->index unchanged. Never prints. */
int cnode_term_format(ei_x_buff *out, cnode_error *err, const char *fmt, ...);

#ifdef __cplusplus
}
#endif
#endif
