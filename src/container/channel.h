// Message framing on a stream socket, as docs/runtime-protocol.md says: a
// 4-byte little-endian length, then that many bytes of UTF-8 JSON, then any
// bytes the message carries (pickle payloads: json binary values here).
// Used on the control channel (runtime <-> worker) and the client socket.
#pragma once
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace thaw::container {

// A message over the limit (1 GiB, text and bytes): nothing was sent.
class MessageTooLarge : public Error {
 public:
  using Error::Error;
};

// Sends one message; throws on failure (peer gone), MessageTooLarge first.
void send_message(int fd, const nlohmann::json& msg);

// Reads one message. Returns nullopt on EOF at a message boundary; throws on
// a timeout (timeout_ms < 0: wait forever), a truncated frame or bad JSON.
std::optional<nlohmann::json> recv_message(int fd, int timeout_ms = -1);

// `v` with each binary value as base64 text, for where a message is kept as
// JSON text (a spawned call's result on disk), and the JSON pointers of
// where they were in *where; binary_payloads turns them back.
nlohmann::json text_payloads(const nlohmann::json& v, std::vector<std::string>* where);
void binary_payloads(nlohmann::json& v, const std::vector<std::string>& where);

// A socket shared by threads: one writer at a time, whole messages.
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  void send(const nlohmann::json& msg) {
    std::lock_guard<std::mutex> lock(mu_);
    send_message(fd_, msg);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
  std::mutex mu_;
};

}  // namespace thaw::container
