/* libcnode — Erlang term text: a parser from Erlang term syntax to ei
 * encoding, a printer from ei encoding to the text OTP 25 prints with
 * io_lib:format("~0p", [T]), and Elixir module-name spelling.
 *
 * No I/O; any thread may call any of them (the one global, a "C" locale so
 * that floats ignore setlocale(), is made once under pthread_once). Pointers
 * are borrowed for the call unless the comment says "free() it". None of
 * them prints, exits or aborts on bad input.
 */
#ifndef CNODE_TERM_H
#define CNODE_TERM_H

#include <stddef.h>
#include <ei.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parse Erlang term text (one term, optional trailing '.' and whitespace) and
 * append its encoding (no 131 version byte is added; callers use
 * ei_x_new_with_version first if they want one) to out. 0 on success; on bad
 * text returns -1, leaves out->index where it was, and writes a message
 * naming the byte offset into err (e.g. "at offset 3: unterminated list").
 * Never crashes, never prints.
 *
 * text: NUL-terminated UTF-8. out: made with ei_x_new or ei_x_new_with_version.
 * err: NULL, or errcap bytes that get a NUL-terminated (maybe cut) message.
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
int cnode_term_parse(const char *text, ei_x_buff *out, char *err, size_t errcap);

/* Print an encoded term (buf[0..len), with or without the leading 131) as
 * OTP 25's io_lib:format("~0p", [T]) prints it. Returns a malloc'd
 * NUL-terminated string (free() it), or NULL for a malformed/truncated term or
 * out of memory. Reads only buf[0, len).
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
 * NULL also for: bytes after the term, compressed terms (tag 80), atom cache
 * refs, nesting deeper than 1024 or more than 2^24 elements (the ei_glue term
 * walker's limits), NaN or infinite floats, atoms that are not valid UTF-8.
 * Bignums print in time quadratic in their size. */
char *cnode_term_print(const char *buf, size_t len);

/* Elixir module spelling: "MyApp.Users" -> "Elixir.MyApp.Users"; names
 * already starting with "Elixir." or starting with a lowercase letter or
 * quote are copied unchanged. Returns 0, or -1 if out is too small (or
 * in/out is NULL, or cap is 0; out is then "" when cap > 0).
 * A lowercase letter is one an unquoted Erlang atom may start with: a-z, or
 * ß-ÿ but ÷ (in UTF-8). The empty name is copied unchanged. */
int cnode_term_module_name(const char *in, char *out, size_t cap);

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
 * 0, or -1 with out->index unchanged and a message naming the offset in fmt
 * (or the hole) in err. Never prints; a bad hole argument is an error. */
int cnode_term_format(ei_x_buff *out, char *err, size_t errcap, const char *fmt, ...);

#ifdef __cplusplus
}
#endif
#endif
