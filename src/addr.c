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

/* "localhost" in any case (DNS names are case-insensitive, RFC 4343), with or without
 * the root's trailing dot. */
static int is_localhost(const char *h) {
  static const char name[] = "localhost";
  size_t i = 0;
  for (; name[i]; i++) {
    char ch = h[i];
    if (ch >= 'A' && ch <= 'Z')
      ch = (char)(ch - 'A' + 'a');
    if (ch != name[i])
      return 0;
  }
  return h[i] == 0 || (h[i] == '.' && h[i + 1] == 0);
}

/* What looks like an address but is not a valid one: digits and dots only (127.1,
 * 1.2.3.256, 010.0.0.1 -- inet_aton's shorthand and octal forms are refused: they
 * make "is this the same host?" checks lie), or anything with a ':' (IPv6). */
static int looks_numeric(const char *h) {
  if (strchr(h, ':'))
    return 1;
  for (; *h; h++)
    if (!((*h >= '0' && *h <= '9') || *h == '.'))
      return 0;
  return 1;
}

/* The host strings accepted (lastword.h, lw_listener_new): an IPv4 dotted quad of
 * four decimal parts (inet_pton AF_INET), an IPv6 address (inet_pton AF_INET6: no
 * brackets, no %zone), or "localhost" (any case, optional trailing dot) = 127.0.0.1.
 * No DNS: a library that owns connection ENDINGS has no business doing blocking name
 * resolution on the loop. A malformed address is LW_EINVAL; a name is LW_ENOENT
 * (resolve it first, e.g. getaddrinfo on another thread). */
int lw__addr_parse(const char *host, int port, struct sockaddr_storage *ss, int *len) {
  memset(ss, 0, sizeof(*ss));
  if (port < 0 || port > 65535 || !host || !*host)
    return LW_EINVAL;
  if (is_localhost(host))
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
  memset(ss, 0, sizeof(*ss));
  return looks_numeric(host) ? LW_EINVAL : LW_ENOENT;
}

int lw__addr_port(const struct sockaddr_storage *ss) {
  return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                        : ((const struct sockaddr_in6 *)ss)->sin6_port);
}
