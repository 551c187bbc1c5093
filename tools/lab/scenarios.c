/*
 * scenarios.c - the claims of ../shared/seeds/CLAIMS.md and the scenarios that test
 * them, as data.
 *
 * Each `expect` line is a prediction the SEED makes, translated to what Linux would
 * show if the seed were right (WSAECONNRESET -> ECONNRESET, closesocket -> close, ...).
 * The lab never decides a verdict by itself being told: a claim HOLDS when every
 * prediction of every scenario it has was observed; otherwise it gets the claim's
 * `if_not` verdict (WINDOWS-ONLY where Microsoft documents the behaviour for Winsock,
 * CONTRADICTED where the claim is simply not what this OS does), and the report shows
 * each failed prediction next to what was observed. Scenarios without `expect` lines
 * are shown for information and do not affect the verdict.
 *
 * Buffer sizes are made small (SO_RCVBUF/SO_SNDBUF 8 KiB) where a scenario needs data
 * still queued at close time, so "send until EAGAIN" takes a few dozen KB, not MBs.
 * SO_SNDBUF is set on the accepted socket: the kernel creates it (cloning the
 * listener's options) when the handshake completes, i.e. during the client's connect().
 */
#include "lab.h"

#include <string.h>

const lw_lab_claim lw_lab_claims[] = {
    {"A1", "closesocket() returns 0; the handle value can be reused at once by another socket",
     LW_V_CONTRADICTED, NULL},
    {"A2", "closesocket() cancels pending async I/O from any thread; completions still arrive",
     LW_V_WINDOWS_ONLY,
     "Linux close() removes the descriptor only: a recv() blocked in another thread holds "
     "its own reference to the socket and keeps waiting (here until its SO_RCVTIMEO); the "
     "FIN goes out when that call lets go. Linux cancellation with completions is "
     "io_uring's IORING_OP_ASYNC_CANCEL (-ECANCELED). 'Do not free the buffer yet' holds."},
    {"A3", "struct linger {l_onoff, l_linger} is {0, 0} by default", LW_V_CONTRADICTED, NULL},
    {"A4", "SO_DONTLINGER = l_onoff 0; with l_onoff != 0 l_linger is unspecified",
     LW_V_NOT_TESTABLE,
     "SO_DONTLINGER is a Winsock option; Linux has none. Shown: its analogue "
     "SO_LINGER{0,5}, which Linux accepts and whose l_linger it ignores."},
    {"A5", "default close returns at once (never WOULDBLOCK); queued data still goes out",
     LW_V_CONTRADICTED, NULL},
    {"A6", "SO_LINGER{1,0}: reset at once, unsent data lost, peer ECONNRESET, no TIME_WAIT",
     LW_V_CONTRADICTED, NULL},
    {"A7", "SO_LINGER{1,N}, blocking: close waits <= N s; sent: graceful; timeout: hard close",
     LW_V_WINDOWS_ONLY,
     "On Linux the FIN is queued at close() and close() waits up to N s for it to be "
     "acknowledged (sk_stream_wait_close); at the timeout it returns 0 and the kernel "
     "keeps delivering in the background: no reset (net/ipv4/tcp.c, __tcp_close)."},
    {"A8", "SO_LINGER{1,N}, non-blocking: close fails WSAEWOULDBLOCK, call it again later",
     LW_V_WINDOWS_ONLY,
     "Linux ignores O_NONBLOCK here: close() blocks for up to the linger time and returns "
     "0; the descriptor is gone at once (inet_release passes sk_lingertime regardless). "
     "An event loop must linger by itself (lw_close)."},
    {"A9", "a close that ended in reset has no TIME_WAIT; one that completed does",
     LW_V_CONTRADICTED, NULL},
    {"A10", "default options: graceful close, resources kept a while (vs B10)",
     LW_V_CONTRADICTED, NULL},
    {"A11", "shutdown(SD_RECEIVE): recv fails; data queued or arriving resets the connection",
     LW_V_WINDOWS_ONLY,
     "Linux SHUT_RD only makes recv() return 0 once the queue is empty: queued and later "
     "data are still accepted, ACKed and readable, and nothing is reset."},
    {"A12", "shutdown(SD_SEND): later sends fail; a FIN is sent", LW_V_CONTRADICTED, NULL},
    {"A13", "shutdown never closes the socket: only closesocket frees it", LW_V_CONTRADICTED,
     NULL},
    {"A14", "graceful sequence: shutdown(SD_SEND), recv until 0, closesocket",
     LW_V_CONTRADICTED, NULL},
    {"A15",
     "a shut-down socket cannot be reconnected; reuse needs DisconnectEx(TF_REUSE_SOCKET)",
     LW_V_WINDOWS_ONLY,
     "Plain reconnect fails here too (EISCONN), but Linux needs no DisconnectEx: "
     "connect(AF_UNSPEC) dissolves the association (tcp_disconnect, an RST if it was "
     "still open) and the same descriptor connects again."},
    {"A16", "disconnecting (FIN/RST exchange) is not closing (freeing the handle)",
     LW_V_CONTRADICTED, NULL},
    {"A17", "a vanished peer is detected by SO_KEEPALIVE probes on an idle connection",
     LW_V_CONTRADICTED, NULL},
    {"A18", "a connection dropped that way fails a pending WSARecv with ERROR_NETNAME_DELETED",
     LW_V_NOT_TESTABLE,
     "ERROR_NETNAME_DELETED (64) is a Win32 error code that only IOCP reports; on Linux "
     "the same event fails the pending recv() with ETIMEDOUT (measured in A17)."},
    {"B1", "the common idiom is shutdown(SD_BOTH); closesocket()", LW_V_CONTRADICTED, NULL},
    {"B2", "four-way close: FIN_WAIT_1/2 and CLOSE_WAIT, LAST_ACK, TIME_WAIT on the closer",
     LW_V_CONTRADICTED, NULL},
    {"B3", "the peer application sees the FIN as a 0-byte receive", LW_V_CONTRADICTED, NULL},
    {"B4", "a forced close does not run the four-way handshake", LW_V_CONTRADICTED, NULL},
    {"B5", "a side that never closes keeps the other waiting", LW_V_CONTRADICTED, NULL},
    {"B6", "there is no un-shutdown: after shutdown make a new socket", LW_V_CONTRADICTED,
     NULL},
    {"B7", "shutdown stops calls; queued sends still go out; the receive buffer is emptied",
     LW_V_CONTRADICTED,
     "Linux shutdown(SHUT_RDWR) does not discard the receive queue: bytes that arrived "
     "before it are still returned by recv(). The send half of the claim holds."},
    {"B8", "shutdown(SD_SEND) sends FIN at once: half-close, the peer can still send",
     LW_V_CONTRADICTED, NULL},
    {"B9", "closesocket may send FIN or RST depending on buffers and options",
     LW_V_CONTRADICTED, NULL},
    {"B10", "l_onoff 0: closes at once without finishing the queue and sends RST",
     LW_V_CONTRADICTED,
     "Linux's default close() is graceful (FIN after the queued data), as A5/A10 say; it "
     "sends RST only when input was left unread (B13, shown below) or with SO_LINGER{1,0}. "
     "The IOCP part (ERROR_NETNAME_DELETED) cannot be exercised here."},
    {"B11", "SO_LINGER{1,0}: RST like B10; {1,N}: waits up to N s for the buffers, then FIN",
     LW_V_CONTRADICTED, NULL},
    {"B12",
     "after shutdown(SD_BOTH) a recv posted before still completes (0) when the peer closes",
     LW_V_WINDOWS_ONLY,
     "Linux shutdown(SHUT_RD or RDWR) wakes a blocked recv() at once with 0: it does not "
     "wait for the peer's FIN."},
    {"B13", "closing with unread received data sends RST instead of FIN", LW_V_CONTRADICTED,
     NULL},
    {"B14", "the 0-byte receive happens when the peer's FIN arrives", LW_V_CONTRADICTED, NULL},
};
const size_t lw_lab_nclaims = sizeof lw_lab_claims / sizeof lw_lab_claims[0];

#ifdef _WIN32
const char *lw_lab_claim_why_win(const char *id) {
  if (strcmp(id, "A4") == 0)
    return "SO_DONTLINGER is a Winsock option, but the lab's scripts have no step for it "
           "yet; shown: SO_LINGER{0,5} and what getsockopt(SO_LINGER) reads back.";
  if (strcmp(id, "A18") == 0)
    return "ERROR_NETNAME_DELETED is what an overlapped WSARecv completes with (IOCP); the "
           "lab makes plain socket calls, and making the peer vanish needs nftables in a "
           "network namespace (Linux-only). tests/win covers the library's IOCP path.";
  return NULL; /* the other `why` texts explain what Linux does */
}
#endif

const char lw_lab_builtin_script[] =
    "scenario A1 claim A1\n"
    "title close() = 0, and the next socket() gets the same number at once\n"
    "client connect\n"
    "server accept\n"
    "client reuse\n"
    "expect call client reuse v1 == 0\n"
    "expect call client reuse ret == 1\n"
    "end\n"

    "scenario A2 claim A2\n"
    "title close() while another thread is blocked in recv() on the socket\n"
    "client connect\n"
    "server accept\n"
    "client arecv 700\n"
    "wait 100\n"
    "client close\n"
    "wait 100\n"
    "diag\n"
    "client join\n"
    "wait 30\n"
    "diag\n"
    "expect call client close ret == 0\n"
    "expect call client join ms < 400\n" /* the seed: close() cancels the pending recv */
    "end\n"

    "scenario A3 claim A3\n"
    "title SO_LINGER of a new socket\n"
    "client getlinger\n"
    "expect call client getlinger v1 == 0\n"
    "expect call client getlinger v2 == 0\n"
    "end\n"

    "scenario A4-analogue claim A4\n"
    "title SO_LINGER{0,5}: the Linux spelling of SO_DONTLINGER\n"
    "client linger 0 5\n"
    "client getlinger\n"
    "end\n"

    "scenario A5 claim A5\n"
    "title default close() on a non-blocking socket with data still queued\n"
    "client rcvbuf 8192\n"
    "client connect\n"
    "server accept\n"
    "server sndbuf 8192\n"
    "server nonblock\n"
    "server fill\n"
    "server close\n"
    "client recv_all\n"
    "client close\n"
    "wait 30\n"
    "diag\n"
    "expect call server close ret == 0\n"
    "expect call server close ms < 50\n"
    "expect call client recv_all bytes == peer_sent\n"
    "expect call client recv_all ret == 0\n"
    "expect seg server FIN\n"
    "expect noseg any RST\n"
    "expect state server TIME_WAIT\n"
    "end\n"

    "scenario A6 claim A6\n"
    "title SO_LINGER{1,0} then close() with data still queued\n"
    "client rcvbuf 8192\n"
    "client connect\n"
    "server accept\n"
    "server sndbuf 8192\n"
    "server fill\n"
    "server linger 1 0\n"
    "server close\n"
    "wait 30\n"
    "diag\n"
    "client recv_all 500\n"
    "expect seg server RST\n"
    "expect noseg server FIN\n"
    "expect call client recv_all errno == ECONNRESET\n"
    "expect call client recv_all bytes < peer_sent\n"
    "expect state server none\n"
    "end\n"

    "scenario A7-in-time claim A7\n"
    "title SO_LINGER{1,1}, blocking, 1000 bytes that fit: close() and the peer reads\n"
    "client connect\n"
    "server accept\n"
    "server send 1000\n"
    "server linger 1 1\n"
    "server close\n"
    "client recv_all\n"
    "client close\n"
    "wait 30\n"
    "diag\n"
    "expect call server close ret == 0\n"
    "expect call server close ms < 500\n"
    "expect seg server FIN\n"
    "expect noseg any RST\n"
    "expect call client recv_all bytes == peer_sent\n"
    "expect state server TIME_WAIT\n"
    "end\n"

    "scenario A7-timeout claim A7\n"
    "title SO_LINGER{1,1}, blocking, the peer does not read: the linger time runs out\n"
    "client rcvbuf 8192\n"
    "client connect\n"
    "server accept\n"
    "server sndbuf 8192\n"
    "server fill\n"
    "server linger 1 1\n"
    "server close\n"
    "client recv_all\n"
    "expect call server close ret == 0\n"
    "expect call server close ms >= 900\n"
    "expect seg server RST\n" /* the seed: timeout -> hard close */
    "expect call client recv_all errno == ECONNRESET\n"
    "end\n"

    "scenario A8 claim A8\n"
    "title SO_LINGER{1,1} on a NON-BLOCKING socket, the peer does not read\n"
    "client rcvbuf 8192\n"
    "client connect\n"
    "server accept\n"
    "server sndbuf 8192\n"
    "server nonblock\n"
    "server fill\n"
    "server linger 1 1\n"
    "server close\n"
    "server fdvalid\n"
    "client recv_all\n"
    "expect call server close ret == -1\n"
    "expect call server close errno == EWOULDBLOCK\n"
    "expect call server fdvalid ret == 1\n"
    "end\n"

    "scenario A9-reset claim A9\n"
    "title close() that resets (SO_LINGER{1,0})\n"
    "client connect\n"
    "server accept\n"
    "server linger 1 0\n"
    "server close\n"
    "wait 30\n"
    "diag\n"
    "expect seg server RST\n"
    "expect state server none\n"
    "end\n"

    "scenario A9-graceful claim A9\n"
    "title close() that completes (both FINs exchanged)\n"
    "client connect\n"
    "server accept\n"
    "server close\n"
    "client recv\n"
    "client close\n"
    "wait 30\n"
    "diag\n"
    "expect seg server FIN\n"
    "expect state server TIME_WAIT\n"
    "end\n"

    "scenario A10 claim A10\n"
    "title default options, nothing unread: close()\n"
    "client connect\n"
    "server accept\n"
    "server send 1000\n"
    "server close\n"
    "client recv_all\n"
    "client close\n"
    "wait 30\n"
    "diag\n"
    "expect seg server FIN\n"
    "expect noseg any RST\n"
    "expect call client recv_all ret == 0\n"
    "expect state server TIME_WAIT\n"
    "end\n"

    "scenario A11 claim A11\n"
    "title shutdown(SHUT_RD), then recv(); then the peer sends 1000 bytes\n"
    "client connect\n"
    "server accept\n"
    "server shutdown rd\n"
    "server recv 65536 200\n"
    "client send 1000\n"
    "wait 50\n"
    "server recv 65536 200\n"
    "wait 30\n"
    "diag\n"
    "expect call server recv#1 ret == -1\n"
    "expect seg server RST\n"
    "end\n"

    "scenario A12 claim A12\n"
    "title shutdown(SHUT_WR), then send()\n"
    "client connect\n"
    "server accept\n"
    "server shutdown wr\n"
    "server send 100\n"
    "client recv\n"
    "expect seg server FIN\n"
    "expect call server send errno == EPIPE\n"
    "expect call client recv ret == 0\n"
    "end\n"

    "scenario A13 claim A13\n"
    "title shutdown(SHUT_RDWR) leaves the descriptor and the socket in place\n"
    "client connect\n"
    "server accept\n"
    "server shutdown rdwr\n"
    "client recv\n"
    "server fdvalid\n"
    "wait 30\n"
    "diag\n"
    "server close\n"
    "expect call server fdvalid ret == 1\n"
    "expect state server FIN_WAIT_2\n"
    "expect call server close ret == 0\n"
    "end\n"

    "scenario A14 claim A14\n"
    "title shutdown(SHUT_WR), read to 0, close(), with a request left unread until then\n"
    "client connect\n"
    "server accept\n"
    "client send 5000\n"
    "server send 100000\n"
    "server shutdown wr\n"
    "client recv_all\n"
    "client close\n"
    "server recv_all\n"
    "server close\n"
    "wait 30\n"
    "diag\n"
    "expect noseg any RST\n"
    "expect call client recv_all bytes == peer_sent\n"
    "expect call client recv_all ret == 0\n"
    "expect call server recv_all ret == 0\n"
    "expect state server TIME_WAIT\n"
    "end\n"

    "scenario A15 claim A15\n"
    "title connect() again after shutdown(); then after connect(AF_UNSPEC)\n"
    "client connect\n"
    "server accept\n"
    "client shutdown rdwr\n"
    "client connect\n"
    "client disconnect\n"
    "client connect\n"
    "server accept\n"
    "client send 10\n"
    "server recv\n"
    "expect call client connect#2 ret == -1\n"
    "expect call client connect#3 ret == -1\n" /* the seed: no reuse without DisconnectEx */
    "end\n"

    "scenario A16 claim A16\n"
    "title shutdown(SHUT_RDWR) disconnects; the descriptor lives until close()\n"
    "client connect\n"
    "server accept\n"
    "server shutdown rdwr\n"
    "client poll 200\n"
    "client recv\n"
    "server fdvalid\n"
    "wait 30\n"
    "diag\n"
    "server close\n"
    "client close\n"
    "expect seg server FIN\n"
    "expect call client recv ret == 0\n"
    "expect call server fdvalid ret == 1\n"
    "end\n"

    "scenario A17-keepalive claim A17 netns\n"
    "title idle connection; the peer vanishes (nft drop); keepalive 1 s / 1 s / 3\n"
    "client connect\n"
    "server accept\n"
    "client keepalive 1 1 3\n"
    "drop\n"
    "client recv 65536 8000\n"
    "diag\n"
    "expect call client recv errno == ETIMEDOUT\n"
    "expect call client recv ms >= 3000\n"
    "expect call client recv ms <= 6000\n"
    "expect state client none\n"
    "end\n"

    "scenario A17-busy claim A17 netns\n"
    "title data in flight when the peer vanishes: keepalive never fires; TCP_USER_TIMEOUT "
    "1500\n"
    "client connect\n"
    "server accept\n"
    "client keepalive 1 1 3\n"
    "client user_timeout 1500\n"
    "drop\n"
    "client send 1000\n"
    "client recv 65536 6000\n"
    "end\n"

    "scenario B1 claim B1\n"
    "title shutdown(SHUT_RDWR); close(), everything read\n"
    "client connect\n"
    "server accept\n"
    "client send 100\n"
    "server recv\n"
    "server shutdown rdwr\n"
    "server close\n"
    "client recv\n"
    "expect seg server FIN\n"
    "expect noseg server RST\n"
    "expect call client recv ret == 0\n"
    "end\n"

    "scenario B1-unread claim B1\n"
    "title the idiom with 100 bytes left unread: FIN, then RST anyway\n"
    "client connect\n"
    "server accept\n"
    "client send 100\n"
    "wait 20\n"
    "server shutdown rdwr\n"
    "server close\n"
    "client recv\n"
    "client send 10\n"
    "end\n"

    "scenario B2 claim B2\n"
    "title the server closes first; the client closes 50 ms later\n"
    "client connect\n"
    "server accept\n"
    "server close\n"
    "wait 30\n"
    "diag\n"
    "client recv\n"
    "client close\n"
    "wait 30\n"
    "diag\n"
    "expect state server#1 FIN_WAIT_2\n"
    "expect state client#1 CLOSE_WAIT\n"
    "expect state server#2 TIME_WAIT\n"
    "expect state client#2 none\n"
    "expect seg server FIN\n"
    "expect seg client FIN\n"
    "end\n"

    "scenario B3 claim B3\n"
    "title shutdown(SHUT_WR) on one side, recv() on the other\n"
    "client connect\n"
    "server accept\n"
    "server shutdown wr\n"
    "client recv\n"
    "expect seg server FIN\n"
    "expect call client recv ret == 0\n"
    "end\n"

    "scenario B4 claim B4\n"
    "title SO_LINGER{1,0} + close(): no FIN at all\n"
    "client connect\n"
    "server accept\n"
    "server linger 1 0\n"
    "server close\n"
    "client recv\n"
    "wait 30\n"
    "diag\n"
    "expect seg server RST\n"
    "expect noseg any FIN\n"
    "expect call client recv errno == ECONNRESET\n"
    "expect state client none\n"
    "end\n"

    "scenario B5 claim B5\n"
    "title the server closes, the client application never does\n"
    "client connect\n"
    "server accept\n"
    "server close\n"
    "wait 200\n"
    "diag\n"
    "expect state client CLOSE_WAIT\n"
    "expect state server FIN_WAIT_2\n"
    "end\n"

    "scenario B6 claim B6\n"
    "title after shutdown(SHUT_WR): send() and connect() again\n"
    "client connect\n"
    "server accept\n"
    "client shutdown wr\n"
    "client send 10\n"
    "client connect\n"
    "expect call client send errno == EPIPE\n"
    "expect call client connect#2 ret == -1\n"
    "end\n"

    "scenario B7 claim B7\n"
    "title shutdown(SHUT_RDWR) with 1000 bytes received and a full send buffer\n"
    "client rcvbuf 8192\n"
    "client connect\n"
    "server accept\n"
    "server sndbuf 8192\n"
    "client send 1000\n"
    "wait 20\n"
    "server fill\n"
    "server shutdown rdwr\n"
    "server send 10\n"
    "server recv 65536 100\n"
    "client recv_all\n"
    "expect call server send errno == EPIPE\n"
    "expect call client recv_all bytes == peer_sent\n"
    "expect call client recv_all ret == 0\n"
    "expect call server recv ret == 0\n" /* the seed: the receive buffer was emptied */
    "end\n"

    "scenario B8 claim B8\n"
    "title half-close: the server shuts down its sending side, the client answers\n"
    "client connect\n"
    "server accept\n"
    "server shutdown wr\n"
    "client recv\n"
    "client send 1000\n"
    "server recv\n"
    "expect seg server FIN\n"
    "expect call client recv ret == 0\n"
    "expect call server recv ret == 1000\n"
    "expect noseg any RST\n"
    "end\n"

    "scenario B9-clean claim B9\n"
    "title close() with everything read\n"
    "client connect\n"
    "server accept\n"
    "client send 100\n"
    "server recv\n"
    "server close\n"
    "client recv\n"
    "expect seg server FIN\n"
    "expect noseg server RST\n"
    "end\n"

    "scenario B9-unread claim B9\n"
    "title close() with 100 bytes unread\n"
    "client connect\n"
    "server accept\n"
    "client send 100\n"
    "wait 20\n"
    "server close\n"
    "client recv\n"
    "expect seg server RST\n"
    "end\n"

    "scenario B10 claim B10\n"
    "title default SO_LINGER{0,0}, send buffer full, nothing unread: close()\n"
    "client rcvbuf 8192\n"
    "client connect\n"
    "server accept\n"
    "server sndbuf 8192\n"
    "server fill\n"
    "server close\n"
    "client recv_all\n"
    "client close\n"
    "wait 30\n"
    "diag\n"
    "expect seg server RST\n"
    "expect call client recv_all errno == ECONNRESET\n"
    "expect call client recv_all bytes < peer_sent\n"
    "end\n"

    "scenario B10-unread claim B10\n"
    "title the same close() with 1000 request bytes left unread (what B10 may have seen)\n"
    "client rcvbuf 8192\n"
    "client connect\n"
    "server accept\n"
    "server sndbuf 8192\n"
    "client send 1000\n"
    "wait 20\n"
    "server fill\n"
    "server close\n"
    "client recv_all\n"
    "wait 30\n"
    "diag\n"
    "end\n"

    "scenario B11-zero claim B11\n"
    "title SO_LINGER{1,0}\n"
    "client connect\n"
    "server accept\n"
    "server send 1000\n"
    "server linger 1 0\n"
    "server close\n"
    "client recv_all 500\n"
    "expect seg server RST\n"
    "expect noseg server FIN\n"
    "end\n"

    "scenario B11-positive claim B11\n"
    "title SO_LINGER{1,2}, 1000 bytes that fit\n"
    "client connect\n"
    "server accept\n"
    "server send 1000\n"
    "server linger 1 2\n"
    "server close\n"
    "client recv_all\n"
    "expect seg server FIN\n"
    "expect noseg server RST\n"
    "expect call server close ms < 1000\n"
    "expect call client recv_all bytes == peer_sent\n"
    "end\n"

    "scenario B12 claim B12\n"
    "title recv() blocked in a thread; shutdown(SHUT_RDWR) at 100 ms; peer closes at 300 ms\n"
    "client connect\n"
    "server accept\n"
    "client arecv 2000\n"
    "wait 100\n"
    "client shutdown rdwr\n"
    "wait 200\n"
    "server close\n"
    "client join\n"
    "expect call client join ret == 0\n"
    "expect call client join ms >= 250\n" /* the seed: it completes when the peer closes */
    "end\n"

    "scenario B13-unread claim B13\n"
    "title close() with 1000 bytes unread, nothing to send\n"
    "client connect\n"
    "server accept\n"
    "client send 1000\n"
    "wait 20\n"
    "server close\n"
    "client recv\n"
    "client recv\n"
    "client send 10\n"
    "wait 30\n"
    "diag\n"
    "expect seg server RST\n"
    "expect noseg server FIN\n"
    "expect call client recv#1 errno == ECONNRESET\n"
    "expect state server none\n"
    "end\n"

    "scenario B13-read claim B13\n"
    "title the same, but the server reads the 1000 bytes first\n"
    "client connect\n"
    "server accept\n"
    "client send 1000\n"
    "server recv\n"
    "server close\n"
    "client recv\n"
    "expect seg server FIN\n"
    "expect noseg server RST\n"
    "expect call client recv ret == 0\n"
    "end\n"

    "scenario B14 claim B14\n"
    "title recv() blocked in a thread; the peer sends FIN 200 ms later\n"
    "client connect\n"
    "server accept\n"
    "client arecv 2000\n"
    "wait 200\n"
    "server shutdown wr\n"
    "client join\n"
    "expect seg server FIN\n"
    "expect call client join ret == 0\n"
    "expect call client join ms >= 150\n"
    "end\n";
