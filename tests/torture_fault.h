/*
 * torture_fault.h - fault injection at the OS seam, for tests/torture.c ONLY.
 *
 * tests/torture_fault.c defines __wrap_ functions for the syscalls and lw__sock_*
 * helpers the library calls; the torture target is linked with -Wl,--wrap=<symbol> for
 * each of them (tests/CMakeLists.txt), so the library's own objects are unchanged and
 * no other binary ever contains an injection point. Faults are injected only on the
 * thread that set tf_config.active (the loop thread): the raw peers in other threads of
 * the same program go through the real calls.
 */
#ifndef LW_TORTURE_FAULT_H
#define LW_TORTURE_FAULT_H

#include <stdint.h>

typedef struct tf_config {
  unsigned soft_permille;  /* EINTR / EAGAIN / short transfer, per call */
  unsigned fatal_permille; /* ECONNRESET / ENOBUFS / ENOMEM, per call */
  unsigned emfile_permille;
  uint64_t seed;
  /* told of every fault injected: fd (-1 for a loop-wide one), what, and whether the
   * fault can end the connection (the model then accepts reason error / peer-reset). */
  void (*note)(int fd, const char *what, int fatal);
} tf_config;

/* Set by the loop thread for itself (thread-local). */
void tf_enable(const tf_config *cfg);
void tf_disable(void);
/* Counters, for the summary. */
typedef struct tf_counts {
  uint64_t eintr, eagain, short_io, fatal, emfile, submit_eintr;
} tf_counts;
void tf_get_counts(tf_counts *out);

#endif
