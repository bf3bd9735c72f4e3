// Unix socket pairs with both ends inside the process, with the data queued
// in each direction. A unix socket whose peer is outside the process is
// "external" (the caller hands a replacement). Every other socket — TCP,
// UDP, listening or named unix sockets — is refused by name.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return link_is(p, "socket:"); }

struct UnixInfo {
  uint32_t peer = 0;
  uint8_t state = 0;
  std::string name;
};

UnixInfo unix_diag(uint64_t ino) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) fail_errno("open sock_diag");
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_ino = static_cast<uint32_t>(ino);
  msg.req.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_NAME;
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u;
  if (::send(nl.get(), &msg, sizeof msg, 0) != sizeof msg) fail_errno("query sock_diag");
  char buf[8192];
  ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  if (n < 0) fail_errno("read sock_diag");
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(h, n) || h->nlmsg_type == NLMSG_ERROR) fail("sock_diag knows no unix socket ", ino);
  auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
  UnixInfo info;
  info.state = m->udiag_state;
  int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
  for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == UNIX_DIAG_PEER) std::memcpy(&info.peer, RTA_DATA(a), 4);
    if (a->rta_type == UNIX_DIAG_NAME) info.name.assign(static_cast<char*>(RTA_DATA(a)), RTA_PAYLOAD(a));
  }
  return info;
}

int sockopt(int fd, int opt) {
  int v = 0;
  socklen_t l = sizeof v;
  if (::getsockopt(fd, SOL_SOCKET, opt, &v, &l) != 0) fail_errno("getsockopt");
  return v;
}

std::string inet_name(int fd, int family, int type) {
  sockaddr_storage ss{};
  socklen_t l = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &l);
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (family == AF_INET) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
    port = ntohs(s->sin_port);
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
    port = ntohs(s->sin6_port);
  }
  return cat(type == SOCK_STREAM ? "TCP " : type == SOCK_DGRAM ? "UDP " : "IP ", host, ":", port);
}

// Copies the receive queue without consuming it: a stream in one peek, a
// datagram socket message by message through SO_PEEK_OFF.
json peek_queue(CheckpointContext& c, int fd, int type) {
  json msgs = json::array();
  std::string buf(4 << 20, '\0');
  if (type == SOCK_STREAM) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) msgs.push_back(store_bytes(c, buf.substr(0, n)));
    return msgs;
  }
  int off = 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) != 0) fail_errno("set SO_PEEK_OFF");
  for (;;) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) break;
    msgs.push_back(store_bytes(c, buf.substr(0, n)));
    if (n == 0) break;
  }
  int none = -1;
  ::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &none, sizeof none);
  return msgs;
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>& all) {
  int fd = p.dup.get();
  int family = sockopt(fd, SO_DOMAIN), type = sockopt(fd, SO_TYPE);
  if (family == AF_INET || family == AF_INET6)
    fail(inet_name(fd, family, type), " sockets (connections) are not supported");
  if (family != AF_UNIX) fail("sockets of address family ", family, " are not supported");
  uint64_t ino = link_inode(p.link);
  UnixInfo u = unix_diag(ino);
  if (!u.name.empty()) {
    std::string name = u.name[0] == '\0' ? "@" + u.name.substr(1) : u.name;
    fail("unix socket bound to ", name, " is not supported (only socket pairs and sockets connected outside)");
  }
  if (u.peer == 0) fail("unconnected unix socket is not supported");
  bool peer_inside = false;
  for (const auto& o : all)
    if (link_is(o, "socket:") && link_inode(o.link) == u.peer) peer_inside = true;
  if (!peer_inside) return json{{"kind", "external"}, {"desc", p.link}};
  return json{{"flags", p.flags}, {"ino", ino}, {"peer", u.peer}, {"type", type},
              {"queue", peek_queue(c, fd, type)}};
}

struct Ends {
  UniqueFd self, peer;
};

int open_socket(RestoreContext& r, RestoreFiles& rf, const json& f) {
  uint64_t ino = f["ino"], peer = f["peer"];
  int self_fd, peer_fd;
  auto it = rf.sockets.find(ino);
  UniqueFd keep_peer;
  if (it != rf.sockets.end()) {
    self_fd = it->second.release();
    rf.sockets.erase(it);
    auto pit = rf.sockets.find(~ino);  // dup of the peer, kept for writing our queue
    if (pit == rf.sockets.end()) fail("socket:[", ino, "]: peer went missing");
    keep_peer = std::move(pit->second);
    rf.sockets.erase(pit);
    peer_fd = keep_peer.get();
  } else {
    int sv[2];
    if (::socketpair(AF_UNIX, f["type"].get<int>() | SOCK_CLOEXEC, 0, sv) != 0)
      fail_errno("socket:[", ino, "]: socketpair");
    self_fd = sv[0];
    peer_fd = sv[1];
    rf.sockets[peer] = UniqueFd(sv[1]);
    rf.sockets[~peer] = UniqueFd(::fcntl(sv[0], F_DUPFD_CLOEXEC, 0));
  }
  // What this end had not read yet was sent by its peer: send it again.
  for (const auto& m : f["queue"]) {
    std::string data = load_bytes(r, m);
    if (::send(peer_fd, data.data(), data.size(), MSG_DONTWAIT) != static_cast<ssize_t>(data.size()))
      fail_errno("socket:[", ino, "]: requeue ", data.size(), " bytes");
  }
  if (::fcntl(self_fd, F_SETFL, f["flags"].get<int>()) != 0) fail_errno("socket:[", ino, "]: set flags");
  return self_fd;
}

}  // namespace

const FileKind kUnixSocket{"unix", match, dump, open_socket, false};

}  // namespace thaw::engine
