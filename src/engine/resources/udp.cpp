// UDP sockets (IPv4 and IPv6): recreated with the same options, bound to the
// same address and connected to the same peer, so a thread caught in
// recvfrom() goes on receiving and send() goes where it went. Datagrams
// queued for reading are not carried: UDP may lose any datagram, and one
// queued here was delivered to the process that was checkpointed (which may
// run on and read it), not to each of its restored copies.
//
// A port the kernel chose (the socket was bound to port 0, or bound itself
// at its first send or connect) is taken again if free; if another socket
// holds it — the original still running, another restore of the image — the
// socket gets a new port of the kernel's choosing, as it would have. A port
// outside the kernel's ephemeral range was chosen by the program: taking
// another would break what it told its peers, so the restore fails instead.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

int int_opt(int fd, int level, int opt) {
  int v = 0;
  socklen_t l = sizeof v;
  if (::getsockopt(fd, level, opt, &v, &l) != 0) return -1;
  return v;
}

bool match(const FdProbe& p) {
  if (!link_is(p, "socket:")) return false;
  int fd = p.dup.get();
  int family = int_opt(fd, SOL_SOCKET, SO_DOMAIN);
  return (family == AF_INET || family == AF_INET6) && int_opt(fd, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM &&
         int_opt(fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDP;
}

// The integer options a program sets on a UDP socket, by family (0: both).
// Restore sets only those that differ from a new socket's, so that buffer
// sizes nobody chose stay unlocked.
struct IntOption {
  const char* name;
  int family, level, opt;
};
constexpr IntOption kOptions[] = {
    {"SO_REUSEADDR", 0, SOL_SOCKET, SO_REUSEADDR},
    {"SO_REUSEPORT", 0, SOL_SOCKET, SO_REUSEPORT},
    {"SO_BROADCAST", 0, SOL_SOCKET, SO_BROADCAST},
    {"SO_PRIORITY", 0, SOL_SOCKET, SO_PRIORITY},
    {"SO_TIMESTAMP", 0, SOL_SOCKET, SO_TIMESTAMP},
    {"SO_TIMESTAMPNS", 0, SOL_SOCKET, SO_TIMESTAMPNS},
    {"SO_PASSCRED", 0, SOL_SOCKET, SO_PASSCRED},
    {"SO_RXQ_OVFL", 0, SOL_SOCKET, SO_RXQ_OVFL},
    {"SO_NO_CHECK", 0, SOL_SOCKET, SO_NO_CHECK},
    {"IP_TOS", AF_INET, IPPROTO_IP, IP_TOS},
    {"IP_TTL", AF_INET, IPPROTO_IP, IP_TTL},
    {"IP_PKTINFO", AF_INET, IPPROTO_IP, IP_PKTINFO},
    {"IP_RECVTOS", AF_INET, IPPROTO_IP, IP_RECVTOS},
    {"IP_RECVTTL", AF_INET, IPPROTO_IP, IP_RECVTTL},
    {"IP_RECVERR", AF_INET, IPPROTO_IP, IP_RECVERR},
    {"IP_MTU_DISCOVER", AF_INET, IPPROTO_IP, IP_MTU_DISCOVER},
    {"IP_MULTICAST_TTL", AF_INET, IPPROTO_IP, IP_MULTICAST_TTL},
    {"IP_MULTICAST_LOOP", AF_INET, IPPROTO_IP, IP_MULTICAST_LOOP},
    {"IP_FREEBIND", AF_INET, IPPROTO_IP, IP_FREEBIND},
    {"IPV6_V6ONLY", AF_INET6, IPPROTO_IPV6, IPV6_V6ONLY},
    {"IPV6_TCLASS", AF_INET6, IPPROTO_IPV6, IPV6_TCLASS},
    {"IPV6_UNICAST_HOPS", AF_INET6, IPPROTO_IPV6, IPV6_UNICAST_HOPS},
    {"IPV6_RECVPKTINFO", AF_INET6, IPPROTO_IPV6, IPV6_RECVPKTINFO},
    {"IPV6_RECVERR", AF_INET6, IPPROTO_IPV6, IPV6_RECVERR},
    {"IPV6_MTU_DISCOVER", AF_INET6, IPPROTO_IPV6, IPV6_MTU_DISCOVER},
    {"IPV6_MULTICAST_HOPS", AF_INET6, IPPROTO_IPV6, IPV6_MULTICAST_HOPS},
    {"IPV6_MULTICAST_LOOP", AF_INET6, IPPROTO_IPV6, IPV6_MULTICAST_LOOP},
    {"UDP_SEGMENT", 0, IPPROTO_UDP, UDP_SEGMENT},
    {"UDP_GRO", 0, IPPROTO_UDP, UDP_GRO},
};

std::string address(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
    port = ntohs(a.sin_port);
    return cat(host, ":", port);
  }
  const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
  ::inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
  port = ntohs(a.sin6_port);
  return cat("[", host, "]:", port);
}

unsigned port_of(const std::vector<uint8_t>& raw) {
  sockaddr_storage ss{};
  std::memcpy(&ss, raw.data(), std::min(raw.size(), sizeof ss));
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
}

json timeout(int fd, int opt) {
  timeval tv{};
  socklen_t l = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, opt, &tv, &l) != 0) fail_errno("read its timeout");
  return json::array({tv.tv_sec, tv.tv_usec});
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>&) {
  int fd = p.dup.get();
  int family = int_opt(fd, SOL_SOCKET, SO_DOMAIN);
  sockaddr_storage local{}, peer{};
  socklen_t ll = sizeof local, pl = sizeof peer;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) fail_errno("getsockname");
  std::string name = cat("UDP ", address(local));
  if (int_opt(fd, IPPROTO_UDP, UDP_CORK) > 0)
    fail(name, ": it holds a corked datagram (UDP_CORK) not sent yet; not supported: uncork it before the "
               "checkpoint");
  // Not read with SO_ERROR, which would clear it for the target too: poll
  // shows it and leaves it. Like an ICMP message, it may be lost.
  pollfd pfd{fd, 0, 0};
  if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR))
    c.notes.push_back(cat(p.where(), ": ", name,
                          " has an error pending (an ICMP error about a datagram it sent, such as \"connection "
                          "refused\"), which the image does not hold"));
  // A queued datagram of no bytes reads as none here; it is as lost as the others.
  int next = 0;
  if (::ioctl(fd, SIOCINQ, &next) == 0 && next > 0)
    c.notes.push_back(cat(p.where(), ": ", name,
                          " has datagrams queued for reading, which the image does not hold (UDP may lose any "
                          "datagram; a process left running still reads them)"));
  json f{{"flags", p.flags}, {"family", family}, {"addr", to_hex(&local, ll)}, {"name", name}};
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) == 0) f["peer"] = to_hex(&peer, pl);
  json opts = json::object();
  for (const auto& o : kOptions)
    if (o.family == 0 || o.family == family) opts[o.name] = int_opt(fd, o.level, o.opt);
  f["options"] = opts;
  f["sndbuf"] = int_opt(fd, SOL_SOCKET, SO_SNDBUF);
  f["rcvbuf"] = int_opt(fd, SOL_SOCKET, SO_RCVBUF);
  f["rcvtimeo"] = timeout(fd, SO_RCVTIMEO);
  f["sndtimeo"] = timeout(fd, SO_SNDTIMEO);
  return f;
}

// ------------------------------------------------------------------ restore

bool in_ephemeral_range(unsigned port) {
  unsigned lo = 32768, hi = 60999;  // the kernel's default
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "re")) {
    if (std::fscanf(f, "%u %u", &lo, &hi) != 2) lo = 32768, hi = 60999;
    std::fclose(f);
  }
  return port >= lo && port <= hi;
}

void set_int(int fd, int level, int opt, int v, const char* what) {
  if (::setsockopt(fd, level, opt, &v, sizeof v) != 0) fail_errno("set ", what, " to ", v);
}

// getsockopt reports a buffer as twice what was asked (the kernel's
// bookkeeping share); asking for half gives the same size back. FORCE
// passes the system's maximum, as the program may have (as root).
void set_buffer(int fd, int force, int plain, int reported, const char* what) {
  int want = reported / 2;
  if (::setsockopt(fd, SOL_SOCKET, force, &want, sizeof want) != 0 &&
      ::setsockopt(fd, SOL_SOCKET, plain, &want, sizeof want) != 0)
    fail_errno("set its ", what, " size");
}

void set_timeout(int fd, int opt, const json& j, const char* what) {
  timeval tv{j.at(0).get<time_t>(), j.at(1).get<suseconds_t>()};
  if (tv.tv_sec == 0 && tv.tv_usec == 0) return;
  if (::setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) != 0) fail_errno("set its ", what);
}

void bind_again(int fd, std::vector<uint8_t> addr, const std::string& name) {
  unsigned port = port_of(addr);
  if (port == 0) return;  // never bound: it binds itself at its first send, as before
  if (::bind(fd, reinterpret_cast<const sockaddr*>(addr.data()), static_cast<socklen_t>(addr.size())) == 0) return;
  if (errno == EADDRINUSE && in_ephemeral_range(port)) {
    // The kernel chose this port; it chooses another (the address stays).
    auto* sa = reinterpret_cast<sockaddr*>(addr.data());
    if (sa->sa_family == AF_INET)
      reinterpret_cast<sockaddr_in*>(sa)->sin_port = 0;
    else
      reinterpret_cast<sockaddr_in6*>(sa)->sin6_port = 0;
    if (::bind(fd, sa, static_cast<socklen_t>(addr.size())) == 0) return;
  }
  if (errno == EADDRINUSE)
    fail_errno(name, ": bind to its port again (another socket holds it: the original still running, or "
                     "another restore of this image; stop it, or let the program bind port 0)");
  fail_errno(name, ": bind to its address again");
}

int open_udp(RestoreContext&, RestoreFiles&, const json& f) {
  int family = f.at("family");
  std::string name = f.at("name");
  UniqueFd s(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP));
  if (!s) fail_errno(name, ": socket");
  int fd = s.get();
  const json& opts = f.at("options");
  for (const auto& o : kOptions) {
    auto it = opts.find(o.name);
    if (it == opts.end() || it->get<int>() < 0) continue;
    int want = it->get<int>();
    if (int_opt(fd, o.level, o.opt) != want) set_int(fd, o.level, o.opt, want, o.name);
  }
  if (int_opt(fd, SOL_SOCKET, SO_SNDBUF) != f.at("sndbuf").get<int>())
    set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, f["sndbuf"], "send buffer");
  if (int_opt(fd, SOL_SOCKET, SO_RCVBUF) != f.at("rcvbuf").get<int>())
    set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, f["rcvbuf"], "receive buffer");
  set_timeout(fd, SO_RCVTIMEO, f.at("rcvtimeo"), "receive timeout");
  set_timeout(fd, SO_SNDTIMEO, f.at("sndtimeo"), "send timeout");
  auto addr = from_hex(f.at("addr").get<std::string>());
  if (addr.size() < sizeof(sockaddr_in) || addr.size() > sizeof(sockaddr_storage))
    fail(name, ": the image's address is ", addr.size(), " bytes long (corrupt image)");
  bind_again(fd, std::move(addr), name);
  if (f.contains("peer")) {
    auto peer = from_hex(f["peer"].get<std::string>());
    if (::connect(fd, reinterpret_cast<const sockaddr*>(peer.data()), static_cast<socklen_t>(peer.size())) != 0)
      fail_errno(name, ": connect to its peer again");
  }
  if (::fcntl(fd, F_SETFL, f.at("flags").get<int>()) != 0) fail_errno(name, ": set flags");
  return s.release();
}

}  // namespace

bool udp_port_of_its_own(const json& f) {
  unsigned port = port_of(from_hex(f.at("addr").get<std::string>()));
  return port != 0 && !in_ephemeral_range(port);
}

const FileKind kUdp{"udp", match, dump, open_udp, nullptr};

}  // namespace thaw::engine
