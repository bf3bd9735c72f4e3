// One message on a SOCK_SEQPACKET unix socket: a text (JSON, by the
// callers' convention) and, optionally, fds passed along with it. Used
// between the runtime and its restore shells, and between `thaw restore
// --from-template` and `thaw template`.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace thaw {

constexpr int kMaxPacketFds = 16;

// Throws, naming `peer`, if the message cannot be sent.
void send_packet(int sock, const std::string& body, const int* fds, int nfds, const char* peer);

// The next message, or nullopt at end of file. Fds that came with it are
// added to *fds (closed if fds is null). Throws on a timeout (timeout_ms <
// 0: none) or a truncated message.
std::optional<std::string> recv_packet(int sock, int timeout_ms, std::vector<UniqueFd>* fds, const char* peer);

}  // namespace thaw
