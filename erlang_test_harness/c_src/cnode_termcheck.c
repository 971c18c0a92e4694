/* cnode_termcheck: the bounded term reader's verdict on each vector of a TSV
 * file (tests/data/term_reader.tsv: name, verdict, hex of one term without
 * 131). Prints "NAME accept" or "NAME refuse" per vector, then "done".
 * terms_SUITE hands BEAM the same bytes and compares. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ei_glue/glue.h"

static int
hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int
main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    FILE *f = fopen(argv[1], "r");
    if (!f)
        return 2;
    static char line[1 << 16];
    static unsigned char bin[1 << 15];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *name = strtok(line, "\t"), *verdict = strtok(NULL, "\t"), *hex = strtok(NULL, "\t\n");
        if (!name || !verdict || !hex)
            return 2;
        size_t n = strlen(hex) / 2;
        if (n > sizeof bin)
            return 2;
        for (size_t i = 0; i < n; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return 2;
            bin[i] = (unsigned char)(hi << 4 | lo);
        }
        ptrdiff_t e = cnode__term_extent((const char *)bin, n, NULL, NULL);
        printf("%s %s\n", name, e == (ptrdiff_t)n ? "accept" : "refuse");
    }
    fclose(f);
    printf("done\n");
    return 0;
}
