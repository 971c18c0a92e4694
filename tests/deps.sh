#!/bin/sh
# Installs the Debian packages libcnode needs, when missing. As root it runs apt-get;
# otherwise it prints the exact command to run and fails.
PKGS="gcc make pkg-config erlang-base erlang-dev erlang-nox erlang-src erlang-common-test erlang-tools \
rebar3 elixir libcunit1-dev libbsd-dev libmd-dev libpcre2-dev procps util-linux hostname gnuplot-nox binutils \
clang-14 libclang-rt-14-dev iproute2 lld libssl-dev openssl"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "make deps: missing packages:$missing" >&2
    echo "run as root: apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
echo "make deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null || {
    echo "make deps: apt-get install failed for:$missing" >&2; exit 1; }
