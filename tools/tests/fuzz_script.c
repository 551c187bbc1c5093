/*
 * libFuzzer target for the lab's scenario parser (lab/script.c, lw_lab_script_parse):
 * arbitrary bytes must never crash it, read past the buffer, or leak; an input it
 * rejects must leave the list exactly as it was, with "line N: ..." in err.
 * Built and run by `make fuzz` (clang, -fsanitize=fuzzer,address,undefined) with the
 * seed corpus in tools/tests/corpus/script.
 */
#include "lab/lab.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char seed[] = "scenario seed\nclient connect\nserver accept\nend\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lw_lab_scenario_list l = {0};
  char err[256];
  if (lw_lab_script_parse(seed, sizeof(seed) - 1, &l, err, sizeof(err)) != 0 || l.n != 1)
    abort();
  /* An exact-size copy: ASan catches any read past the end. */
  char *buf = malloc(size ? size : 1);
  if (!buf)
    return 0;
  if (size)
    memcpy(buf, data, size);
  err[0] = 0;
  int r = lw_lab_script_parse(buf, size, &l, err, sizeof(err));
  if (r == 0) {
    if (l.n < 1)
      abort();
    for (int i = 0; i < l.n; i++)
      if (l.v[i].nsteps < 0)
        abort();
  } else {
    if (r != -1 || l.n != 1 || strncmp(err, "line ", 5) != 0)
      abort(); /* rejected: the list is unchanged and the error names a line */
  }
  lw_lab_scenario_list_free(&l);
  free(buf);
  return 0;
}
