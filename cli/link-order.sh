#!/bin/sh
# cli/link-order.sh HOT EI_ARCHIVE INPUT...: prints the symbol order build/cnode is linked
# with (ld.lld --symbol-ordering-file). The functions named in HOT (cli/hot.syms, base
# names: foo also takes foo.part.0, foo.isra.0, ...) go last, right before the PLT that
# ld.lld puts after .text, so the code an idle node runs sits in a few contiguous pages;
# every other function goes first, in input order. Our objects are built with
# -ffunction-sections (one section per function); ei's archive is not, so a member that
# holds one hot function is hot as a whole.
hot=$1 ei=$2
shift 2
nm --defined-only -A "$@" "$ei" 2>/dev/null | awk -v hotf="$hot" -v ei="$ei" '
BEGIN {
    while ((getline l < hotf) > 0)
        if (l != "" && l !~ /^#/) { hot[l] = 1; hotlist[++nh] = l }
}
NF >= 3 && $(NF - 1) ~ /^[tT]$/ {
    name = $NF; base = name; sub(/\..*/, "", base)
    src = $1; sub(/:[^:]*$/, "", src) # FILE:MEMBER (archives) or FILE
    n++; names[n] = name; srcs[n] = src; bases[n] = base
    if (index(src, ei ":") == 1 && (base in hot))
        hotmember[src] = 1
}
END {
    for (i = 1; i <= n; i++)
        if (!(bases[i] in hot) && !(srcs[i] in hotmember))
            print names[i]
    for (i = 1; i <= nh; i++)
        print hotlist[i]
    for (i = 1; i <= n; i++)
        if (((bases[i] in hot) && names[i] != bases[i]) || ((srcs[i] in hotmember) && !(names[i] in hot)))
            print names[i]
}'
