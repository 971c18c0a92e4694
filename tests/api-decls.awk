# Lists the public functions declared in the headers given as arguments (include/*.h), one line
# each: "NAME documented|undocumented FILE:LINE". A declaration is a line at column 0 that names
# cnode_something( and is not a typedef, a macro or a comment; it ends at the first ';'.
# It is documented when a comment ends on the line just above it, when it has a comment of its
# own on its first line, or when the nearest comment above its run of declarations (no blank
# line between) names it. Used by tests/check-api-docs.sh and tests/check-symbols.sh.
function flush_decl(    name) {
    if (match(decl, /cnode_[A-Za-z0-9_]+[ \t]*\(/)) {
        name = substr(decl, RSTART, RLENGTH)
        sub(/[ \t]*\($/, "", name)
        doc = (prev_comment_end == decl_line - 1) || own_comment || index(group_comment, name) > 0
        printf "%s %s %s:%d\n", name, doc ? "documented" : "undocumented", FILENAME, decl_line
    }
    decl = ""
}
FNR == 1 { in_comment = 0; prev_comment_end = -10; group_comment = ""; decl = ""; in_decl = 0 }
{
    line = $0
    if (in_decl) {
        decl = decl " " line
        if (index(line, ";")) { in_decl = 0; flush_decl() }
        next
    }
    if (in_comment) {
        comment = comment "\n" line
        if (index(line, "*/")) { in_comment = 0; prev_comment_end = FNR; group_comment = comment }
        next
    }
    if (line ~ /^[ \t]*$/) { group_comment = ""; next }
    if (line ~ /^[ \t]*\/\*/) {
        comment = line
        if (index(line, "*/")) { prev_comment_end = FNR; group_comment = comment } else in_comment = 1
        next
    }
    if (line ~ /^[A-Za-z]/ && line !~ /^typedef/ && line ~ /cnode_[A-Za-z0-9_]+[ \t]*\(/) {
        decl = line; decl_line = FNR
        code = line; sub(/\/\*.*/, "", code)
        own_comment = (index(line, "/*") > 0)
        if (index(code, ";")) flush_decl(); else in_decl = 1
        next
    }
}
