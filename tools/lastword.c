/*
 * lastword.c - the `lastword` command: dispatch to its subcommands.
 */
#include "check.h"
#include "inspect.h"
#include "lab/lab.h"

#include <signal.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif
#include <stdio.h>
#include <string.h>

static void lw_usage(FILE *f) {
  fputs("usage: lastword <command> [options]\n"
        "\n"
        "commands:\n"
        "  lab       run every claim of the seed documents on real sockets and show\n"
        "            what went on the wire, what each call returned, and a verdict\n"
        "            (lastword lab --help)\n"
        "  check     HOST:PORT: does this server end connections right? Ten client\n"
        "            behaviours, a verdict each (lastword check --help)\n"
        "  inspect   TCP sockets on a port by state, with warnings (CLOSE_WAIT,\n"
        "            TIME_WAIT pile-ups, orphaned FIN_WAIT_2) (lastword inspect --help)\n"
        "  help      this text\n",
        f);
}

int main(int argc, char **argv) {
#ifdef _WIN32
  /* UTF-8 output (the report's arrows and boxes), and "\n" not "\r\n" in pipes. */
  SetConsoleOutputCP(CP_UTF8);
  _setmode(_fileno(stdout), _O_BINARY);
  _setmode(_fileno(stderr), _O_BINARY);
#endif
  /* Every send in the tool passes MSG_NOSIGNAL; ignoring SIGPIPE as well makes sure
   * a write to a reset socket is reported as EPIPE, never a silent death. */
#ifdef SIGPIPE /* Windows has none: a send to a reset socket fails, it never kills */
  signal(SIGPIPE, SIG_IGN);
#endif
  if (argc < 2) {
    lw_usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "lab") == 0)
    return lw_lab_main(argc - 1, argv + 1);
#ifndef _WIN32
  if (strcmp(cmd, "check") == 0)
    return lw_check_main(argc - 1, argv + 1);
#endif
  if (strcmp(cmd, "inspect") == 0)
    return lw_inspect_main(argc - 1, argv + 1);
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    lw_usage(stdout);
    return 0;
  }
  fprintf(stderr, "lastword: unknown command '%s'\n", cmd);
  lw_usage(stderr);
  return 2;
}
