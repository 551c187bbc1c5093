/*
 * bench_args.h - the command line and the payload every comparison server shares, so
 * that they differ only in the event library under test:
 *   NAME --listen HOST:PORT [--bytes N] [--mode respond|echo|respond-linger]
 * respond-linger is raw_epoll's only (the hand-written graceful floor, raw_epoll.c).
 */
#ifndef LW_BENCH_ARGS_H
#define LW_BENCH_ARGS_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_args {
  char host[64];
  int port;
  const char *listen; /* HOST:PORT as given */
  size_t nbytes;      /* response size */
  int echo_mode;
  int linger;    /* --mode respond-linger */
  char *payload; /* nbytes of i % 251 */
} bench_args;

/* Parses argv, builds the payload and ignores SIGPIPE. Returns 0, or 2 after printing
 * the usage (the exit status the servers use for bad usage). */
static int bench_args_parse(bench_args *a, int argc, char **argv, const char *name) {
  memset(a, 0, sizeof(*a));
  a->listen = "127.0.0.1:0";
  a->nbytes = 1024 * 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--listen"))
      a->listen = argv[i + 1];
    else if (!strcmp(argv[i], "--bytes"))
      a->nbytes = strtoull(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--mode")) {
      a->echo_mode = !strcmp(argv[i + 1], "echo");
      a->linger = !strcmp(argv[i + 1], "respond-linger");
    } else
      goto usage;
  }
  const char *colon = strrchr(a->listen, ':');
  if (!colon || (size_t)(colon - a->listen) >= sizeof(a->host) || a->nbytes == 0)
    goto usage;
  memcpy(a->host, a->listen, (size_t)(colon - a->listen));
  a->host[colon - a->listen] = 0;
  a->port = atoi(colon + 1);
  a->payload = malloc(a->nbytes);
  if (!a->payload)
    return 2;
  for (size_t i = 0; i < a->nbytes; i++)
    a->payload[i] = (char)(i % 251);
  signal(SIGPIPE, SIG_IGN);
  return 0;
usage:
  fprintf(stderr,
          "usage: %s --listen HOST:PORT [--bytes N] [--mode respond|echo|respond-linger]\n",
          name);
  return 2;
}

#endif
