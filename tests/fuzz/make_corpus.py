#!/usr/bin/env python3
"""Writes the kept seed corpora, tests/fuzz/corpus/<target>/, from the golden
bytes in tests/data/ (control messages captured from BEAM, term encodings and
their text) and from the handshake and epmd layouts of protocol.md. Run from
the project root after the goldens change: python3 tests/fuzz/make_corpus.py"""
import hashlib, os, shutil, struct

root = 'tests/fuzz/corpus'
COOKIE = b'fuzzcookie'      # hs_drive.h
CHALLENGE = 0x01020304
PEER = b'peer@host'
FLAGS = 0xD075F4FBC         # CNODE__DFLAGS_OURS


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def tsv(path):
    with open(path, encoding='utf-8') as f:
        return [l.rstrip('\n').split('\t') for l in f if l.strip()]


def msg(body):
    return struct.pack('>H', len(body)) + body


def digest(ch):
    return hashlib.md5(COOKIE + str(ch).encode()).digest()


# fuzz_dispatch's seeds come from tests/fuzz/make_dispatch_corpus.escript (BEAM's term_to_binary)
for d in os.listdir(root) if os.path.isdir(root) else []:
    if d != 'fuzz_dispatch':
        shutil.rmtree(os.path.join(root, d))

ctl = tsv('tests/data/ctl_golden.tsv')
for name, _op, hexbody in ctl:
    put('fuzz_ctl', name, bytes.fromhex(hexbody))
frames = b''.join(struct.pack('>I', len(bytes.fromhex(h))) + bytes.fromhex(h) for _, _, h in ctl[:6])
put('fuzz_frame', 'ctl4', b'\x01' + frames + b'\0\0\0\0')
put('fuzz_frame', 'tick4', b'\x01\0\0\0\0\0\0\0\0')
put('fuzz_frame', 'hs2', b'\x00' + msg(b'sok') + msg(b'a' + bytes(16)))
put('fuzz_frame', 'big4', b'\x03\0\0\1\0' + bytes(8))

terms = tsv('tests/data/term_text_golden.tsv')
for i, (hexterm, text) in list(enumerate(terms))[::3]:
    b = bytes.fromhex(hexterm)
    b = b[1:] if b[:1] == b'\x83' else b
    for t in ('fuzz_term_walker', 'fuzz_term_print', 'fuzz_phash2', 'fuzz_inspect', 'fuzz_ei_vs_walker'):
        put(t, 'g%03d' % i, b)
    put('fuzz_term_text', 'g%03d' % i, text.encode())

put('fuzz_epmd_alive2', 'x_ok', bytes([118, 0]) + struct.pack('>I', 0x5f3a1b2c))
put('fuzz_epmd_alive2', 'old_ok', bytes([121, 0, 0, 3]))
put('fuzz_epmd_alive2', 'x_err', bytes([118, 1, 0, 0, 0, 0]))
put('fuzz_epmd_port2', 'found', bytes([119, 0]) + struct.pack('>HBBHHH', 40123, 77, 0, 6, 5, 4) + b'node' +
    struct.pack('>H', 0))
put('fuzz_epmd_port2', 'extra', bytes([119, 0]) + struct.pack('>HBBHHH', 1, 72, 0, 6, 5, 3) + b'abc' +
    struct.pack('>H', 2) + b'xy')
put('fuzz_epmd_port2', 'missing', bytes([119, 1]))
put('fuzz_epmd_names', 'two', struct.pack('>I', 4369) + b'name a at port 1234\nname bb at port 65535\n')
put('fuzz_epmd_names', 'empty', struct.pack('>I', 4369))

send_name = b'N' + struct.pack('>QI', FLAGS, 7) + struct.pack('>H', len(PEER)) + PEER
challenge = b'N' + struct.pack('>QII', FLAGS, 0xdeadbeef, 9) + struct.pack('>H', len(PEER)) + PEER
reply = b'r' + struct.pack('>I', 0xdeadbeef) + digest(CHALLENGE)
ack = b'a' + digest(CHALLENGE)
for i, body in enumerate([send_name, challenge, b'sok', reply, ack]):
    put('fuzz_hs_msgs', 'm%d' % i, bytes([i]) + body)
put('fuzz_hs_msgs', 'old_n', bytes([0]) + b'n\0\5' + struct.pack('>I', 0x7fffd) + b'a@b')

# answers byte: bits 0-2 the status (0 ok, 1 ok_simultaneous, 3 alive), bit 3 live connection, bit 4 refuse
put('fuzz_hs_accept', 'up', b'\x00\x07' + msg(send_name) + msg(reply))
put('fuzz_hs_accept', 'simultaneous', b'\x01\x03' + msg(send_name) + msg(reply))
put('fuzz_hs_accept', 'alive_true', b'\x03\x05' + msg(send_name) + msg(b'strue') + msg(reply))
put('fuzz_hs_accept', 'alive_false', b'\x03\x05' + msg(send_name) + msg(b'sfalse'))
put('fuzz_hs_accept', 'nok', b'\x02\x01' + msg(send_name))
put('fuzz_hs_accept', 'wrong_cookie', b'\x00\x09' + msg(send_name) + msg(b'r' + bytes(20)))
put('fuzz_hs_dial', 'up', b'\x00\x07' + msg(b'sok') + msg(challenge) + msg(ack))
put('fuzz_hs_dial', 'alive', b'\x00\x02' + msg(b'salive') + msg(challenge) + msg(ack))
put('fuzz_hs_dial', 'alive_live', b'\x08\x02' + msg(b'salive'))
put('fuzz_hs_dial', 'nok', b'\x00\x02' + msg(b'snok'))
put('fuzz_hs_dial', 'not_allowed', b'\x00\x02' + msg(b'snot_allowed'))
