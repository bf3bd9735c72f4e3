// TCP sockets that are not listening: connections, established or closing.
// Their state is shared with a peer outside the process, which a restore
// cannot bring along, so they are refused, unless the checkpoint was asked
// to close them (CheckpointOptions::tcp_close). Then each comes back as a
// connection its peer dropped: a socket reset by its peer, whose next read
// fails with ECONNRESET, next write with EPIPE, and which poll and epoll
// report as ERR|HUP — what a client that reconnects after a network failure
// already handles, and what a snapshot of a serverless function gives its
// connections (their peers never saw the restored copy).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/inet.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

using inet::address;
using inet::int_option;

// Not listening (tcp_listen.cpp takes those).
bool match(const FdProbe& p) {
  return inet::is(p, SOCK_STREAM) && int_option(p.dup.get(), SOL_SOCKET, SO_ACCEPTCONN) != 1;
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>&) {
  int fd = p.dup.get();
  int family = int_option(fd, SOL_SOCKET, SO_DOMAIN);
  sockaddr_storage local{}, peer{};
  socklen_t ll = sizeof local, pl = sizeof peer;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) fail_errno("getsockname");
  bool connected = ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) == 0;
  // A connection the peer reset whose error was not read yet has no peer
  // any more, only the error; poll shows it without consuming it.
  pollfd pfd{fd, 0, 0};
  bool failed = ::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR);
  std::string name = connected ? cat("TCP ", address(local), " -> ", address(peer)) : cat("TCP ", address(local));
  if (!connected && !failed)
    fail(name, ": a TCP socket that neither listens nor is connected is not supported");
  if (!c.tcp_close)
    fail(name, ": TCP connections are not supported (listening TCP sockets are): close it before the checkpoint "
               "and connect again after, or checkpoint with --tcp-close to have it restored as a connection its "
               "peer dropped");
  c.notes.push_back(cat(p.where(), ": ", name,
                        ": restored closed, as a connection its peer dropped (its next read says ECONNRESET)"));
  return json{{"flags", p.flags}, {"family", family}, {"name", name}};
}

// ------------------------------------------------------------------ restore

// A listener on the loopback address of `family` (IPv4's where IPv6 has
// none: an IPv6 socket reaches it at its v4-mapped address).
UniqueFd loopback_listener(int family, sockaddr_storage& addr, socklen_t& len) {
  if (family == AF_INET6) {
    UniqueFd l(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    len = sizeof a;
    if (l && ::bind(l.get(), reinterpret_cast<sockaddr*>(&a), len) == 0 && ::listen(l.get(), 1) == 0 &&
        ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      return l;
  }
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l) fail_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    fail_errno("bind a listener to 127.0.0.1 (the loopback interface is needed to make a reset connection)");
  if (::listen(l.get(), 1) != 0) fail_errno("listen");
  sockaddr_in got{};
  socklen_t gl = sizeof got;
  if (::getsockname(l.get(), reinterpret_cast<sockaddr*>(&got), &gl) != 0) fail_errno("getsockname");
  if (family == AF_INET) {
    std::memcpy(&addr, &got, sizeof got);
    len = sizeof got;
  } else {
    sockaddr_in6 mapped{};
    mapped.sin6_family = AF_INET6;
    mapped.sin6_port = got.sin_port;
    mapped.sin6_addr.s6_addr[10] = mapped.sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(&mapped.sin6_addr.s6_addr[12], &got.sin_addr, 4);
    std::memcpy(&addr, &mapped, sizeof mapped);
    len = sizeof mapped;
  }
  return l;
}

// The kernel makes a reset connection only from a connection: one to a
// listener of ours, whose accepted end closes with a zero linger (a RST).
int open_closed(RestoreContext&, RestoreFiles&, const json& f) {
  int family = f.at("family");
  std::string name = f.at("name");
  return with_context(cat(name, ": make a connection its peer dropped"), [&] {
    sockaddr_storage addr{};
    socklen_t len = 0;
    UniqueFd listener = loopback_listener(family, addr, len);
    UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) fail_errno("socket");
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) fail_errno("connect to our listener");
    UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!accepted) fail_errno("accept");
    linger lg{1, 0};
    if (::setsockopt(accepted.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0) fail_errno("SO_LINGER");
    accepted.reset();
    // On loopback the reset arrives within the close; wait for it anyway.
    pollfd pfd{s.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 5000) != 1 || !(pfd.revents & (POLLERR | POLLHUP)))
      fail("the reset did not arrive within 5 s");
    if (::fcntl(s.get(), F_SETFL, f.at("flags").get<int>()) != 0) fail_errno("set flags");
    return s.release();
  });
}

}  // namespace

const FileKind kTcpClosed{"tcp_closed", match, dump, open_closed, nullptr};

}  // namespace thaw::engine
