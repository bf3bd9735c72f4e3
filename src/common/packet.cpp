#include "common/packet.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/error.h"

namespace thaw {

namespace {
constexpr size_t kMaxPacket = 1 << 20;
}

void send_packet(int sock, const std::string& body, const int* fds, int nfds, const char* peer) {
  if (nfds > kMaxPacketFds) fail("too many fds for one message to ", peer, " (", nfds, ")");
  iovec iov{const_cast<char*>(body.data()), body.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxPacketFds)] = {};
  if (nfds > 0) {
    mh.msg_control = ctl;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) fail_errno("send to ", peer);
}

std::optional<std::string> recv_packet(int sock, int timeout_ms, std::vector<UniqueFd>* fds, const char* peer) {
  if (timeout_ms >= 0) {
    struct pollfd p{sock, POLLIN, 0};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      if (r > 0) break;
      if (r < 0 && errno != EINTR) fail_errno("poll");
      if (r == 0) fail("no answer from ", peer, " within ", timeout_ms, " ms");
    }
  }
  std::string body(kMaxPacket, '\0');
  iovec iov{body.data(), body.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxPacketFds)];
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  ssize_t n;
  do n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) fail_errno("receive from ", peer);
  std::vector<UniqueFd> got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        got.emplace_back(fd);
      }
    }
  if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) fail("a message to or from ", peer, " was truncated");
  if (n == 0 && got.empty()) return std::nullopt;
  if (fds)
    for (auto& f : got) fds->push_back(std::move(f));
  body.resize(n);
  return body;
}

}  // namespace thaw
