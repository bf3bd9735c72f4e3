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
// outside the kernel's ephemeral range (on the checkpointing machine) was
// chosen by the program: taking another would break what it told its peers,
// so the restore fails instead, even where SO_REUSEADDR would let it share
// (those options are set after the bind). Not carried, and noted in the
// docs: multicast group memberships (the kernel shows them per interface,
// not per socket).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <linux/sockios.h>
#include <linux/filter.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/inet.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

using inet::address;
using inet::int_option;

bool match(const FdProbe& p) {
  return inet::is(p, SOCK_DGRAM) && int_option(p.dup.get(), SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDP;
}

// The integer options a program sets on a UDP socket, by family (0: both),
// in the order restore sets them. Restore sets only those that differ from
// a new socket's, so that buffer sizes nobody chose stay unlocked.
struct IntOption {
  const char* name;
  int family, level, opt;
};
constexpr IntOption kOptions[] = {
    {"SO_BROADCAST", 0, SOL_SOCKET, SO_BROADCAST},
    {"SO_MARK", 0, SOL_SOCKET, SO_MARK},
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
    {"IP_TRANSPARENT", AF_INET, IPPROTO_IP, IP_TRANSPARENT},
    {"IP_RECVORIGDSTADDR", AF_INET, IPPROTO_IP, IP_RECVORIGDSTADDR},
    {"IP_MULTICAST_ALL", AF_INET, IPPROTO_IP, IP_MULTICAST_ALL},
    {"IP_MULTICAST_IF", AF_INET, IPPROTO_IP, IP_MULTICAST_IF},  // a struct in_addr: four bytes, as an int
    {"IPV6_V6ONLY", AF_INET6, IPPROTO_IPV6, IPV6_V6ONLY},
    {"IPV6_TCLASS", AF_INET6, IPPROTO_IPV6, IPV6_TCLASS},
    {"IPV6_UNICAST_HOPS", AF_INET6, IPPROTO_IPV6, IPV6_UNICAST_HOPS},
    {"IPV6_RECVPKTINFO", AF_INET6, IPPROTO_IPV6, IPV6_RECVPKTINFO},
    {"IPV6_RECVERR", AF_INET6, IPPROTO_IPV6, IPV6_RECVERR},
    {"IPV6_MTU_DISCOVER", AF_INET6, IPPROTO_IPV6, IPV6_MTU_DISCOVER},
    {"IPV6_MULTICAST_HOPS", AF_INET6, IPPROTO_IPV6, IPV6_MULTICAST_HOPS},
    {"IPV6_MULTICAST_LOOP", AF_INET6, IPPROTO_IPV6, IPV6_MULTICAST_LOOP},
    {"IPV6_MULTICAST_IF", AF_INET6, IPPROTO_IPV6, IPV6_MULTICAST_IF},
    {"IPV6_RECVHOPLIMIT", AF_INET6, IPPROTO_IPV6, IPV6_RECVHOPLIMIT},
    {"IPV6_RECVTCLASS", AF_INET6, IPPROTO_IPV6, IPV6_RECVTCLASS},
    {"IPV6_TRANSPARENT", AF_INET6, IPPROTO_IPV6, IPV6_TRANSPARENT},
    {"UDP_CORK", 0, IPPROTO_UDP, UDP_CORK},
    {"UDP_SEGMENT", 0, IPPROTO_UDP, UDP_SEGMENT},
    {"UDP_GRO", 0, IPPROTO_UDP, UDP_GRO},
    {"UDP_ENCAP", 0, IPPROTO_UDP, UDP_ENCAP},
    // Last: IP_TOS sets the priority too (the kernel maps the TOS to one).
    {"SO_PRIORITY", 0, SOL_SOCKET, SO_PRIORITY},
};
// Set after the bind: before it, two sockets with SO_REUSEADDR (or
// SO_REUSEPORT) may share a port, and a port taken by another socket would
// be shared with it instead of chosen anew. After it they still let later
// sockets share this one's port, as the program asked.
constexpr IntOption kAfterBind[] = {
    {"SO_REUSEADDR", 0, SOL_SOCKET, SO_REUSEADDR},
    {"SO_REUSEPORT", 0, SOL_SOCKET, SO_REUSEPORT},
};

bool in_ephemeral_range(unsigned port) {
  unsigned lo = 32768, hi = 60999;  // the kernel's default
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "re")) {
    if (std::fscanf(f, "%u %u", &lo, &hi) != 2) lo = 32768, hi = 60999;
    std::fclose(f);
  }
  return port >= lo && port <= hi;
}

void read_options(int fd, int family, std::span<const IntOption> table, json& opts) {
  for (const auto& o : table)
    if (o.family == 0 || o.family == family) opts[o.name] = int_option(fd, o.level, o.opt);
}

json timeout(int fd, int opt) {
  timeval tv{};
  socklen_t l = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, opt, &tv, &l) != 0) fail_errno("read its timeout");
  return json::array({tv.tv_sec, tv.tv_usec});
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>&) {
  int fd = p.dup.get();
  int family = int_option(fd, SOL_SOCKET, SO_DOMAIN);
  sockaddr_storage local{}, peer{};
  socklen_t ll = sizeof local, pl = sizeof peer;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) fail_errno("getsockname");
  std::string name = cat("UDP ", address(local));
  // A datagram being put together (MSG_MORE, UDP_CORK) lives in the kernel
  // until its last part: the restored socket would send the rest alone.
  int unsent = 0;
  if (::ioctl(fd, SIOCOUTQ, &unsent) == 0 && unsent > 0)
    fail(name, ": ", unsent, " bytes of a datagram being put together (MSG_MORE or UDP_CORK), or not sent yet, "
               "are in the kernel; not supported: send its last part first (or checkpoint again)");
  sock_fprog filter{};
  socklen_t fl = 0;  // asking for no room gives the filter's length
  if (::getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, &filter, &fl) == 0 && fl > 0)
    fail(name, ": it has a socket filter attached (SO_ATTACH_FILTER, ", fl, " instructions); not supported");
  // Not read with SO_ERROR, which would clear it for the target too: poll
  // shows it and leaves it. Like an ICMP message, it may be lost.
  pollfd pfd{fd, 0, 0};
  if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR))
    c.notes.push_back(cat(p.where(), ": ", name,
                          " has an error pending (an ICMP error about a datagram it sent, such as \"connection "
                          "refused\"), which the image does not hold"));
  // SO_MEMINFO reads the receive queue's size without touching it (SIOCINQ
  // would drop datagrams with bad checksums on the way).
  uint32_t mem[SK_MEMINFO_VARS] = {};
  socklen_t ml = sizeof mem;
  if (::getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &ml) == 0 && mem[SK_MEMINFO_RMEM_ALLOC] > 0)
    c.notes.push_back(cat(p.where(), ": ", name,
                          " has datagrams queued for reading, which the image does not hold (UDP may lose any "
                          "datagram; a process left running still reads them)"));
  json f{{"flags", p.flags}, {"family", family}, {"addr", to_hex(&local, ll)}, {"name", name}};
  // Whether the port is one the kernel chose, by this machine's range: the
  // restoring machine's may differ.
  unsigned port = inet::port_of(local);
  f["kernel_port"] = port != 0 && in_ephemeral_range(port);
  char dev[IFNAMSIZ + 1] = {};
  socklen_t dl = IFNAMSIZ;
  if (::getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &dl) == 0 && dev[0]) f["device"] = std::string(dev);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) == 0) f["peer"] = to_hex(&peer, pl);
  json opts = json::object();
  read_options(fd, family, kOptions, opts);
  read_options(fd, family, kAfterBind, opts);
  f["options"] = opts;
  f["sndbuf"] = int_option(fd, SOL_SOCKET, SO_SNDBUF);
  f["rcvbuf"] = int_option(fd, SOL_SOCKET, SO_RCVBUF);
  f["rcvtimeo"] = timeout(fd, SO_RCVTIMEO);
  f["sndtimeo"] = timeout(fd, SO_SNDTIMEO);
  return f;
}

// ------------------------------------------------------------------ restore

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

void set_options(int fd, std::span<const IntOption> table, const json& opts) {
  for (const auto& o : table) {
    auto it = opts.find(o.name);
    if (it == opts.end() || it->get<int>() < 0) continue;
    int want = it->get<int>();
    if (int_option(fd, o.level, o.opt) != want) set_int(fd, o.level, o.opt, want, o.name);
  }
}

void bind_again(int fd, inet::Address addr, bool kernel_port, const std::string& name) {
  if (inet::port_of(addr.ss) == 0) return;  // never bound: it binds itself at its first send, as before
  if (::bind(fd, addr.get(), addr.len) == 0) return;
  if (errno == EADDRINUSE && kernel_port) {
    // The kernel chose this port; it chooses another (the address stays).
    inet::set_port(addr.ss, 0);
    if (::bind(fd, addr.get(), addr.len) == 0) return;
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
  set_options(fd, kOptions, opts);
  if (f.contains("device")) {
    std::string dev = f["device"];
    if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev.c_str(), static_cast<socklen_t>(dev.size())) != 0)
      fail_errno(name, ": bind to device ", dev, " again");
  }
  if (int_option(fd, SOL_SOCKET, SO_SNDBUF) != f.at("sndbuf").get<int>())
    set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, f["sndbuf"], "send buffer");
  if (int_option(fd, SOL_SOCKET, SO_RCVBUF) != f.at("rcvbuf").get<int>())
    set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, f["rcvbuf"], "receive buffer");
  set_timeout(fd, SO_RCVTIMEO, f.at("rcvtimeo"), "receive timeout");
  set_timeout(fd, SO_SNDTIMEO, f.at("sndtimeo"), "send timeout");
  auto addr = with_context(name, [&] { return inet::from_image(f.at("addr").get<std::string>()); });
  bind_again(fd, addr, f.at("kernel_port").get<bool>(), name);
  set_options(fd, kAfterBind, opts);
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
  return inet::port_of(inet::from_image(f.at("addr").get<std::string>()).ss) != 0 &&
         !f.at("kernel_port").get<bool>();
}

const FileKind kUdp{"udp", match, dump, open_udp, nullptr};

}  // namespace thaw::engine
