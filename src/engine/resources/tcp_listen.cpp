// Listening TCP sockets (IPv4 and IPv6): recreated bound to the same address
// with the same backlog and options, so a thread caught in accept() simply
// goes on accepting. Connections — established, or queued waiting for
// accept() — are refused by name: their peers live outside the process.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/inet.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

using inet::int_option;

bool match(const FdProbe& p) {
  int fd = p.dup.get();
  return inet::is(p, SOCK_STREAM) && int_option(fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP &&
         int_option(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1;
}

struct ListenInfo {
  uint32_t backlog = 0, waiting = 0;
};

// inet_diag reports, for a listening socket, its backlog (wqueue) and the
// connections waiting to be accepted (rqueue). Runs in our network
// namespace: the target must share it (it does unless containerised).
ListenInfo listen_info(int family, uint64_t ino) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) fail_errno("open sock_diag");
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = static_cast<uint8_t>(family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = 1u << 10;  // TCP_LISTEN
  if (::send(nl.get(), &msg, sizeof msg, 0) != sizeof msg) fail_errno("query sock_diag");
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = ::recv(nl.get(), buf.data(), buf.size(), 0);
    if (n <= 0) fail_errno("read sock_diag");
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) fail("sock_diag does not know listening socket ", ino,
                                             " (is the process in another network namespace?)");
      if (h->nlmsg_type == NLMSG_ERROR) fail("sock_diag refused the query");
      auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      if (m->idiag_inode == ino) return ListenInfo{m->idiag_wqueue, m->idiag_rqueue};
    }
  }
}

json dump(CheckpointContext&, FdProbe& p, const std::vector<FdProbe>&) {
  int fd = p.dup.get();
  int family = int_option(fd, SOL_SOCKET, SO_DOMAIN);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) fail_errno("getsockname");
  ListenInfo li = listen_info(family, link_inode(p.link));
  if (li.waiting)
    fail("listening TCP socket has ", li.waiting,
         " connection(s) waiting to be accepted; TCP connections are not supported");
  json f{{"flags", p.flags},
         {"family", family},
         {"addr", to_hex(&ss, len)},
         {"backlog", li.backlog},
         {"reuseaddr", int_option(fd, SOL_SOCKET, SO_REUSEADDR) > 0},
         {"reuseport", int_option(fd, SOL_SOCKET, SO_REUSEPORT) > 0},
         {"nodelay", int_option(fd, IPPROTO_TCP, TCP_NODELAY) > 0}};
  if (family == AF_INET6) f["v6only"] = int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY) > 0;
  return f;
}

void set(int fd, int level, int opt, bool on, const char* what) {
  int v = on ? 1 : 0;
  if (::setsockopt(fd, level, opt, &v, sizeof v) != 0) fail_errno("set ", what);
}

int open_listen(RestoreContext&, RestoreFiles&, const json& f) {
  int family = f["family"];
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) fail_errno("socket");
  set(s.get(), SOL_SOCKET, SO_REUSEADDR, f["reuseaddr"].get<bool>(), "SO_REUSEADDR");
  set(s.get(), SOL_SOCKET, SO_REUSEPORT, f["reuseport"].get<bool>(), "SO_REUSEPORT");
  set(s.get(), IPPROTO_TCP, TCP_NODELAY, f["nodelay"].get<bool>(), "TCP_NODELAY");
  if (family == AF_INET6) set(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, f["v6only"].get<bool>(), "IPV6_V6ONLY");
  auto addr = from_hex(f["addr"].get<std::string>());
  if (::bind(s.get(), reinterpret_cast<const sockaddr*>(addr.data()), static_cast<socklen_t>(addr.size())) != 0) {
    if (errno == EADDRINUSE)
      fail_errno("bind to its address again (another process — the original? — listens there)");
    fail_errno("bind to its address again");
  }
  if (::listen(s.get(), f["backlog"].get<int>()) != 0) fail_errno("listen");
  if (::fcntl(s.get(), F_SETFL, f["flags"].get<int>()) != 0) fail_errno("set flags");
  return s.release();
}

}  // namespace

const FileKind kTcpListen{"tcp_listen", match, dump, open_listen, nullptr};

}  // namespace thaw::engine
