// The address of a unix socket at a filesystem path.
#pragma once
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <string>

#include "common/error.h"

namespace thaw {

// Throws if the path does not fit (108 bytes with its NUL on Linux).
inline sockaddr_un unix_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    fail("socket path too long (", path.size(), " bytes, at most ", sizeof a.sun_path - 1, "): ", path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

}  // namespace thaw
