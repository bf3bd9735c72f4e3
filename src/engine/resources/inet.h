// What the kinds of IP sockets share (tcp_listen.cpp, tcp_conn.cpp, udp.cpp,
// and the refusals in sockets.cpp).
#pragma once
#include <sys/socket.h>

#include <string>

#include "engine/resources/file_kinds.h"

namespace thaw::engine::inet {

// An integer socket option, or -1 where it cannot be read.
int int_option(int fd, int level, int opt);
// An IPv4 or IPv6 socket of this type (SOCK_STREAM, SOCK_DGRAM)?
bool is(const FdProbe& p, int type);
// "127.0.0.1:8080", "[::1]:8080".
std::string address(const sockaddr_storage& ss);
// The address the socket is bound to ("?:0" where it has none to tell).
std::string local_address(int fd);

// An IPv4 or IPv6 port (host order), read or set in place.
unsigned port_of(const sockaddr_storage& ss);
void set_port(sockaddr_storage& ss, unsigned port);

// A socket address as an image holds it (the sockaddr, hex); fails on a
// length no IPv4 or IPv6 address has (a corrupt image).
struct Address {
  sockaddr_storage ss{};
  socklen_t len = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
};
Address from_image(const std::string& hex);

}  // namespace thaw::engine::inet
