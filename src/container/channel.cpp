#include "container/channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "common/error.h"

namespace thaw::container {

namespace {

constexpr uint32_t kMaxMessage = 1u << 30;

// Reads exactly len bytes. Returns false on EOF before the first byte.
bool read_exact(int fd, char* p, size_t len, std::chrono::steady_clock::time_point deadline, bool forever) {
  size_t got = 0;
  while (got < len) {
    int wait_ms = -1;
    if (!forever) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) fail("timed out waiting for a message");
      wait_ms = static_cast<int>(left.count());
    }
    struct pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, wait_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno("poll");
    if (r == 0) continue;
    ssize_t n = ::read(fd, p + got, len - got);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) fail_errno("read message");
    if (n == 0) {
      if (got == 0) return false;
      fail("connection closed in the middle of a message");
    }
    got += n;
  }
  return true;
}

}  // namespace

void send_message(int fd, const nlohmann::json& msg) {
  std::string body = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (body.size() > kMaxMessage) fail("message too large (", body.size(), " bytes)");
  uint32_t n = static_cast<uint32_t>(body.size());
  std::string frame(4, '\0');
  for (int i = 0; i < 4; i++) frame[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  frame += body;
  size_t off = 0;
  while (off < frame.size()) {
    // MSG_NOSIGNAL: a peer that went away is an error, not a SIGPIPE.
    ssize_t w = ::send(fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == ENOTSOCK) w = ::write(fd, frame.data() + off, frame.size() - off);
    if (w < 0) fail_errno("send message");
    off += w;
  }
}

std::optional<nlohmann::json> recv_message(int fd, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  bool forever = timeout_ms < 0;
  unsigned char hdr[4];
  if (!read_exact(fd, reinterpret_cast<char*>(hdr), 4, deadline, forever)) return std::nullopt;
  uint32_t n = hdr[0] | (hdr[1] << 8) | (hdr[2] << 16) | (uint32_t(hdr[3]) << 24);
  if (n > kMaxMessage) fail("message too large (", n, " bytes)");
  std::string body(n, '\0');
  if (n && !read_exact(fd, body.data(), n, deadline, forever)) fail("connection closed in the middle of a message");
  try {
    return nlohmann::json::parse(body);
  } catch (const std::exception& e) {
    fail("malformed message: ", e.what());
  }
}

}  // namespace thaw::container
