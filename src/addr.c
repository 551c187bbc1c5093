/*
 * addr.c - socket addresses, the same on every OS (POSIX and Winsock both have
 * inet_pton and sockaddr_in/in6 with the same fields).
 */
#include "internal.h"

#include <string.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

/* Numeric addresses only (plus "localhost"): a library that owns connection ENDINGS has
 * no business doing blocking DNS on the loop. */
int lw__addr_parse(const char *host, int port, struct sockaddr_storage *ss, int *len) {
  memset(ss, 0, sizeof(*ss));
  if (port < 0 || port > 65535 || !host)
    return LW_EINVAL;
  if (strcmp(host, "localhost") == 0)
    host = "127.0.0.1";
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *len = (int)sizeof(*a4);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *len = (int)sizeof(*a6);
    return 0;
  }
  return LW_EINVAL;
}

int lw__addr_port(const struct sockaddr_storage *ss) {
  return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                        : ((const struct sockaddr_in6 *)ss)->sin6_port);
}
