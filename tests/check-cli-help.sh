#!/bin/sh
# `cnode --version` names the library version, the OTP release and the distribution flags;
# every command that `cnode --help` lists answers `cnode COMMAND --help` with its own usage.
cd "$(dirname "$0")/.." || exit 1
cnode=${CNODE_BIN:-build/cnode}
fail() { echo "check-cli-help: $*"; exit 1; }
v=$($cnode --version) || fail "cnode --version exits $?"
want=$(sed -n 's/^VERSION *:= *//p' Makefile)
printf '%s\n' "$v" | grep -q "^cnode $want " || fail "--version does not name version $want: $(printf '%s' "$v" | head -n 1)"
printf '%s\n' "$v" | grep -q "OTP [0-9][0-9]*\." || fail "--version names no OTP release"
printf '%s\n' "$v" | grep -q "distribution flags advertised: 0x[0-9a-f]* " || fail "--version shows no distribution flags"
printf '%s\n' "$v" | grep -q "HANDSHAKE_23" || fail "--version does not name the flags"
cmds=$($cnode --help | awk '/^commands:/ { on = 1; next } on && /^$/ { exit } on && /^  [a-z]/ { print $1 }')
[ "$(printf '%s\n' "$cmds" | wc -w)" -ge 6 ] || fail "cnode --help lists only: $cmds"
for c in $cmds; do
    h=$($cnode "$c" --help) || fail "cnode $c --help exits $?"
    printf '%s\n' "$h" | head -n 1 | grep -q "^usage: cnode $c" || fail "cnode $c --help: $(printf '%s' "$h" | head -n 1)"
    [ "$(printf '%s\n' "$h" | wc -l)" -ge 3 ] || fail "cnode $c --help says too little"
    h2=$($cnode --help "$c") && [ "$h2" = "$h" ] || fail "cnode --help $c differs from cnode $c --help"
done
echo "check-cli-help: --version and --help of" $cmds
