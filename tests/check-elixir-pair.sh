#!/bin/sh
# The serving side of the story, end to end: examples/elixir/kv_client.exs on an Elixir node and
# two examples/serve_group.c members. Elixir routes puts and gets over the C members with :pg and
# :erpc and prints the spread and the missing-key error; on SIGTERM each member leaves the group
# and exits 0, and the Elixir script, seeing the group empty, exits 0.
cd "$(dirname "$0")/.." || exit 1
. tests/beamlib.sh
fail() { echo "check-elixir-pair: $*"; [ -f "$BL_TMP/ex.out" ] && sed 's/^/  elixir: /' "$BL_TMP/ex.out"; exit 1; }
command -v elixir >/dev/null || fail "elixir is not installed (make deps installs it)"
bl_epmd || exit 1
EX=ex$$
elixir --sname "$EX" --cookie "$BL_COOKIE" examples/elixir/kv_client.exs 2 40 >"$BL_TMP/ex.out" 2>&1 &
expid=$!
bl_track $expid
scope_up() { grep -q 'scope :rpc_load_balancer started' "$BL_TMP/ex.out"; }
bl_wait 60 scope_up || fail "the Elixir node did not start its scope"
for k in 1 2; do
    build/examples/serve_group --sname "kv$k$$" --cookie "$BL_COOKIE" --connect "$EX@$BL_HOST" >"$BL_TMP/kv$k.out" 2>&1 &
    eval "kv$k=\$!"
    bl_track $!
done
asked_to_leave() { grep -q 'waiting for the members to leave' "$BL_TMP/ex.out"; }
exited() { ! kill -0 "$expid" 2>/dev/null; }
bl_wait 60 asked_to_leave || { exited && fail "kv_client stopped early"; fail "kv_client never got through its calls"; }
grep -q "^  kv1$$@$BL_HOST [1-9]" "$BL_TMP/ex.out" && grep -q "^  kv2$$@$BL_HOST [1-9]" "$BL_TMP/ex.out" \
    || fail "the spread does not show both C members"
grep -q 'badkey, "nobody"' "$BL_TMP/ex.out" || fail "the missing-key error is not shown"
kill -TERM "$kv1" "$kv2"
bl_wait 30 exited || fail "kv_client did not see the members leave"
wait "$expid"; rc=$?
[ $rc = 0 ] || fail "kv_client exited $rc"
for k in 1 2; do
    eval "p=\$kv$k"
    gone() { ! kill -0 "$p" 2>/dev/null; }
    bl_wait 10 gone || fail "serve_group kv$k did not stop on SIGTERM"
    wait "$p"; rc=$?
    [ $rc = 0 ] || fail "serve_group kv$k exited $rc: $(tail -n 1 "$BL_TMP/kv$k.out")"
    grep -q "left rpc_load_balancer/kv on SIGTERM" "$BL_TMP/kv$k.out" || fail "serve_group kv$k did not say it left"
done
cat "$BL_TMP/ex.out"
echo "check-elixir-pair: Elixir spread 40 keys over 2 C members, showed the missing-key error; both left on SIGTERM"
