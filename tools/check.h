#ifndef LW_CHECK_H
#define LW_CHECK_H
#include <stddef.h>
/* `lastword check HOST:PORT`: how a server ends connections, tested from the outside
 * (tools/README-check.md). */
int lw_check_main(int argc, char **argv);
/* Decodes C escapes (\r \n \t \\ \" \0 \xHH) of src into dst (at most cap bytes).
 * Returns the length, or -1 on a bad escape or overflow. Exposed for tests. */
long lw_check_unescape(const char *src, char *dst, size_t cap);
#endif
