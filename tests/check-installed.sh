#!/bin/sh
# The installed copy, used out of tree as a user would: `make install` into a temporary prefix
# (and with DESTDIR), then examples/hello.c and examples/defrpc.c (a balancer) built against it
# with pkg-config alone, shared and static, and each run against a real BEAM node.
cd "$(dirname "$0")/.." || exit 1
. tests/beamlib.sh
MAKE=${MAKE:-make}
fail() { echo "check-installed: $*"; exit 1; }
inst=$BL_TMP/prefix
$MAKE -s --no-print-directory install PREFIX="$inst" >"$BL_TMP/install.log" 2>&1 \
    || fail "make install failed: $(tail -n 1 "$BL_TMP/install.log")"
for h in include/*.h; do [ -f "$inst/$h" ] || fail "make install left out $h"; done
[ -x "$inst/bin/cnode" ] || fail "no bin/cnode installed"
[ -f "$inst/lib/libcnode.a" ] || fail "no lib/libcnode.a installed"
[ "$(readlink "$inst/lib/libcnode.so")" = libcnode.so.0 ] || fail "lib/libcnode.so is not a link to the soname"
[ -f "$inst/lib/libcnode.so.0" ] || fail "lib/libcnode.so.0 missing"
objdump -p "$inst/lib/libcnode.so.0" | grep -q 'SONAME *libcnode.so.0' || fail "the library's soname is not libcnode.so.0"
grep -qx "prefix=$inst" "$inst/lib/pkgconfig/cnode.pc" || fail "cnode.pc: $(grep '^prefix=' "$inst/lib/pkgconfig/cnode.pc"), not $inst"
# DESTDIR: files under it, the .pc names PREFIX alone
$MAKE -s --no-print-directory install PREFIX=/opt/cnode-check DESTDIR="$BL_TMP/stage" >"$BL_TMP/install2.log" 2>&1 \
    || fail "make install DESTDIR=... failed: $(tail -n 1 "$BL_TMP/install2.log")"
grep -qx "prefix=/opt/cnode-check" "$BL_TMP/stage/opt/cnode-check/lib/pkgconfig/cnode.pc" \
    || fail "with DESTDIR, cnode.pc does not name the PREFIX alone"

export PKG_CONFIG_PATH="$inst/lib/pkgconfig"
build() { # OUT SOURCE shared|static
    if [ "$3" = shared ]; then
        flags="$(pkg-config --cflags --libs cnode)"
    else
        # -lcnode would pick the shared library: the static build names the archive
        flags="$(pkg-config --static --cflags cnode) $(pkg-config --static --libs cnode | sed 's/-lcnode\b/-l:libcnode.a/')"
    fi
    [ $? = 0 ] || fail "pkg-config failed"
    # shellcheck disable=SC2086
    cc -std=c11 -o "$1" "$2" $flags >"$BL_TMP/cc.log" 2>&1 \
        || fail "$2 ($3) does not build against the installed copy: $(head -n 3 "$BL_TMP/cc.log" | tr '\n' ' ' | cut -c1-300)"
}
for kind in shared static; do
    build "$BL_TMP/hello_$kind" examples/hello.c $kind
    build "$BL_TMP/defrpc_$kind" examples/defrpc.c $kind
done
ldd "$BL_TMP/hello_shared" | grep -q "$inst/lib/libcnode.so.0" || LD_LIBRARY_PATH=$inst/lib ldd "$BL_TMP/hello_shared" | grep -q "$inst/lib/libcnode.so.0" \
    || fail "hello (shared) does not load the installed libcnode.so.0"
LD_LIBRARY_PATH=$inst/lib ldd "$BL_TMP/hello_static" | grep -q libcnode && fail "hello (static) loads libcnode.so"

bl_epmd || exit 1
A=ci_a$$
bl_beam "$A" -eval "register(echo, spawn(fun L() -> receive {P, M} -> P ! {echoed, M}, L() end end))" || exit 1
bl_wait 20 bl_is "$A" "is_pid(whereis(echo))." true || fail "the echo process did not start on $A"
for kind in shared static; do
    LD_LIBRARY_PATH=$inst/lib timeout 30 "$BL_TMP/hello_$kind" --sname "ci_h$kind$$" --cookie "$BL_COOKIE" \
        --peer "$A@$BL_HOST" --to echo >"$BL_TMP/hello_$kind.out" 2>&1 \
        || fail "hello ($kind) failed: $(tail -n 1 "$BL_TMP/hello_$kind.out")"
    grep -q echoed "$BL_TMP/hello_$kind.out" || fail "hello ($kind) printed no echoed reply"
    LD_LIBRARY_PATH=$inst/lib timeout 30 "$BL_TMP/defrpc_$kind" --sname "ci_d$kind$$" --cookie "$BL_COOKIE" \
        --nodes "$A@$BL_HOST" >"$BL_TMP/defrpc_$kind.out" 2>&1 \
        || fail "defrpc ($kind) failed: $(tail -n 1 "$BL_TMP/defrpc_$kind.out")"
    grep -q "'$A@$BL_HOST'" "$BL_TMP/defrpc_$kind.out" || grep -q "$A@$BL_HOST" "$BL_TMP/defrpc_$kind.out" \
        || fail "defrpc ($kind) did not reach $A: $(head -n 2 "$BL_TMP/defrpc_$kind.out" | tr '\n' ' ')"
done
echo "check-installed: installed to a temporary prefix; hello and defrpc built shared and static with pkg-config, both ran against BEAM"
