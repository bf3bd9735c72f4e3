#include "engine/resources/inet.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "common/error.h"
#include "common/io.h"

namespace thaw::engine::inet {

int int_option(int fd, int level, int opt) {
  int v = 0;
  socklen_t l = sizeof v;
  if (::getsockopt(fd, level, opt, &v, &l) != 0) return -1;
  return v;
}

bool is(const FdProbe& p, int type) {
  if (!link_is(p, "socket:")) return false;
  int fd = p.dup.get();
  int family = int_option(fd, SOL_SOCKET, SO_DOMAIN);
  return (family == AF_INET || family == AF_INET6) && int_option(fd, SOL_SOCKET, SO_TYPE) == type;
}

std::string address(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
    return cat(host, ":", ntohs(a.sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    ::inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
    return cat("[", host, "]:", ntohs(a.sin6_port));
  }
  return "?:0";
}

unsigned port_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
}

void set_port(sockaddr_storage& ss, unsigned port) {
  if (ss.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in&>(ss).sin_port = htons(static_cast<uint16_t>(port));
  else
    reinterpret_cast<sockaddr_in6&>(ss).sin6_port = htons(static_cast<uint16_t>(port));
}

Address from_image(const std::string& hex) {
  auto raw = from_hex(hex);
  if (raw.size() < sizeof(sockaddr_in) || raw.size() > sizeof(sockaddr_storage))
    fail("the image's address is ", raw.size(), " bytes long (corrupt image)");
  Address a;
  std::memcpy(&a.ss, raw.data(), raw.size());
  a.len = static_cast<socklen_t>(raw.size());
  return a;
}

std::string local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t l = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &l) != 0) return "?:0";
  return address(ss);
}

}  // namespace thaw::engine::inet
