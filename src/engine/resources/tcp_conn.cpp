// TCP sockets that are not listening. One never used (nothing sent) comes
// back as it is. Connections — established, connecting, closing, or closed
// and not yet closed by the program — share their state with a peer outside
// the process, which a restore cannot bring along, so they are refused,
// unless the checkpoint was asked to close them
// (CheckpointOptions::tcp_close). Then each comes back as a connection its
// peer reset: its first read or write fails with ECONNRESET (poll and epoll
// report ERR|HUP until then), later reads see EOF and writes EPIPE — what a
// client that reconnects after a network failure already handles, and what
// a snapshot of a serverless function gives its connections (their peers
// never saw the restored copy). One whose reset the program had already
// read comes back with that error read too.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h>  // its tcp_info has tcpi_segs_out, glibc's does not
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

constexpr uint8_t kTcpClose = 7;  // the kernel's TCP_CLOSE (include/net/tcp_states.h)

// Not listening (tcp_listen.cpp takes those); TCP itself, not MPTCP or
// SCTP, which are stream sockets too.
bool match(const FdProbe& p) {
  int fd = p.dup.get();
  return inet::is(p, SOCK_STREAM) && int_option(fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP &&
         int_option(fd, SOL_SOCKET, SO_ACCEPTCONN) != 1;
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
  tcp_info ti{};
  socklen_t tl = sizeof ti;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0) fail_errno("read TCP_INFO");
  std::string name = connected ? cat("TCP ", address(local), " -> ", address(peer)) : cat("TCP ", address(local));
  json f{{"flags", p.flags}, {"family", family}, {"name", name}};
  if (!connected && !failed && ti.tcpi_state == kTcpClose && ti.tcpi_segs_out == 0) {
    // Never used (nothing sent, not even a SYN): nothing outside knows it.
    // It comes back as it is, bound where it was bound.
    f["fresh"] = true;
    f["addr"] = to_hex(&local, ll);
    f["reuseaddr"] = int_option(fd, SOL_SOCKET, SO_REUSEADDR) > 0;
    f["reuseport"] = int_option(fd, SOL_SOCKET, SO_REUSEPORT) > 0;
    if (family == AF_INET6) f["v6only"] = int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY) > 0;
    return f;
  }
  if (!c.tcp_close)
    fail(name, ": TCP connections are not supported (listening TCP sockets are): close it before the checkpoint "
               "and connect again after, or checkpoint with --tcp-close to have it restored as a connection its "
               "peer dropped");
  // Closed already, its error read (or none: a shutdown both ways): a read
  // sees EOF, as before.
  f["error_read"] = !failed && ti.tcpi_state == kTcpClose;
  c.notes.push_back(cat(p.where(), ": ", name,
                        ": restored closed, as a connection its peer reset (the first read or write fails with "
                        "ECONNRESET, then reads see EOF)"));
  return f;
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

void set_flag(int fd, int level, int opt, bool on, const char* what) {
  int v = on ? 1 : 0;
  if (::setsockopt(fd, level, opt, &v, sizeof v) != 0) fail_errno("set ", what);
}

int open_fresh(const json& f) {
  int family = f.at("family");
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) fail_errno("socket");
  set_flag(s.get(), SOL_SOCKET, SO_REUSEADDR, f.at("reuseaddr").get<bool>(), "SO_REUSEADDR");
  set_flag(s.get(), SOL_SOCKET, SO_REUSEPORT, f.at("reuseport").get<bool>(), "SO_REUSEPORT");
  if (family == AF_INET6) set_flag(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, f.at("v6only").get<bool>(), "IPV6_V6ONLY");
  auto addr = inet::from_image(f.at("addr").get<std::string>());
  if (inet::port_of(addr.ss) != 0 && ::bind(s.get(), addr.get(), addr.len) != 0)
    fail_errno("bind to its address again");
  if (::fcntl(s.get(), F_SETFL, f.at("flags").get<int>()) != 0) fail_errno("set flags");
  return s.release();
}

// The kernel makes a reset connection only from a connection: one to a
// listener of ours, whose accepted end closes with a zero linger (a RST).
int open_closed(RestoreContext&, RestoreFiles&, const json& f) {
  int family = f.at("family");
  std::string name = f.at("name");
  if (f.value("fresh", false)) return with_context(name, [&] { return open_fresh(f); });
  return with_context(cat(name, ": make a connection its peer dropped"), [&] {
    sockaddr_storage addr{};
    socklen_t len = 0;
    UniqueFd listener = loopback_listener(family, addr, len);
    UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) fail_errno("socket");
    // Where IPv6 has no loopback the listener is IPv4's, reached at its
    // v4-mapped address, which a V6ONLY socket (net.ipv6.bindv6only) cannot.
    if (family == AF_INET6) set_flag(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, false, "IPV6_V6ONLY");
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
    if (f.value("error_read", false)) {
      char byte;
      ssize_t ignored = ::recv(s.get(), &byte, 1, MSG_DONTWAIT);  // takes the ECONNRESET the original had read
      (void)ignored;
    }
    if (::fcntl(s.get(), F_SETFL, f.at("flags").get<int>()) != 0) fail_errno("set flags");
    return s.release();
  });
}

}  // namespace

const FileKind kTcpClosed{"tcp_closed", match, dump, open_closed, nullptr};

}  // namespace thaw::engine
