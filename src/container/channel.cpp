#include "container/channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "common/base64.h"
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

namespace {

using nlohmann::json;

// Bytes (pickle payloads, json binary values in memory) travel after the
// JSON text, not in it: escaping and scanning them character by character
// (base64 in a JSON string, on every hop) held payloads to ~20 MB/s.
// A frame with any: the length word has kBlobsFlag set, a second word
// gives the bytes after the text, and the text's "$blobs" says where each
// goes: [[JSON pointer, length], ...] in order.
constexpr uint32_t kBlobsFlag = 0x80000000u;

std::string pointer_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

// `v` with each binary value replaced by what `f(value, its JSON pointer)`
// returns.
template <class F>
json map_binaries(const json& v, const std::string& at, const F& f) {
  if (v.is_binary()) return f(v.get_binary(), at);
  if (v.is_object()) {
    json out = json::object();
    for (const auto& [k, x] : v.items()) out[k] = map_binaries(x, at + "/" + pointer_token(k), f);
    return out;
  }
  if (v.is_array()) {
    json out = json::array();
    for (size_t i = 0; i < v.size(); i++) out.push_back(map_binaries(v[i], at + "/" + std::to_string(i), f));
    return out;
  }
  return v;
}

bool has_blobs(const json& v) {
  if (v.is_binary()) return true;
  if (v.is_structured())
    for (const auto& x : v)
      if (has_blobs(x)) return true;
  return false;
}

void write_all(int fd, const char* p, size_t len) {
  size_t off = 0;
  while (off < len) {
    // MSG_NOSIGNAL: a peer that went away is an error, not a SIGPIPE.
    ssize_t w = ::send(fd, p + off, len - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == ENOTSOCK) w = ::write(fd, p + off, len - off);
    if (w < 0) fail_errno("send message");
    off += w;
  }
}

void put_word(std::string& out, uint32_t n) {
  for (int i = 0; i < 4; i++) out += static_cast<char>((n >> (8 * i)) & 0xff);
}

uint32_t word(const unsigned char* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }

}  // namespace

void send_message(int fd, const nlohmann::json& msg) {
  std::vector<std::pair<std::string, const json::binary_t*>> blobs;
  std::string body;
  uint64_t blob_bytes = 0;
  if (has_blobs(msg)) {
    // The text has null where each goes; they follow it in this order.
    json text = map_binaries(msg, "", [&](const json::binary_t& b, const std::string& at) {
      blobs.emplace_back(at, &b);
      return json();
    });
    json where = json::array();
    for (const auto& [at, b] : blobs) {
      where.push_back({at, b->size()});
      blob_bytes += b->size();
    }
    text["$blobs"] = where;
    body = text.dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    body = msg.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  if (body.size() + blob_bytes > kMaxMessage)
    throw MessageTooLarge(cat("message too large (", body.size() + blob_bytes, " bytes; the limit is ", kMaxMessage >> 20,
                              " MiB)"));
  std::string head;
  put_word(head, static_cast<uint32_t>(body.size()) | (blobs.empty() ? 0 : kBlobsFlag));
  if (!blobs.empty()) put_word(head, static_cast<uint32_t>(blob_bytes));
  body.insert(0, head);
  write_all(fd, body.data(), body.size());
  for (const auto& [at, b] : blobs) write_all(fd, reinterpret_cast<const char*>(b->data()), b->size());
}

std::optional<nlohmann::json> recv_message(int fd, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  bool forever = timeout_ms < 0;
  unsigned char hdr[4];
  if (!read_exact(fd, reinterpret_cast<char*>(hdr), 4, deadline, forever)) return std::nullopt;
  uint32_t n = word(hdr);
  bool with_blobs = n & kBlobsFlag;
  n &= ~kBlobsFlag;
  uint32_t blob_bytes = 0;
  if (with_blobs) {
    if (!read_exact(fd, reinterpret_cast<char*>(hdr), 4, deadline, forever))
      fail("connection closed in the middle of a message");
    blob_bytes = word(hdr);
  }
  if (uint64_t(n) + blob_bytes > kMaxMessage) fail("message too large (", uint64_t(n) + blob_bytes, " bytes)");
  std::string body(n, '\0');
  if (n && !read_exact(fd, body.data(), n, deadline, forever)) fail("connection closed in the middle of a message");
  json msg;
  try {
    msg = json::parse(body);
  } catch (const std::exception& e) {
    fail("malformed message: ", e.what());
  }
  if (!with_blobs) return msg;
  if (!msg.is_object() || !msg.contains("$blobs") || !msg["$blobs"].is_array())
    fail("malformed message: bytes follow it, but it has no \"$blobs\" saying where they go");
  json where = std::move(msg["$blobs"]);
  msg.erase("$blobs");
  uint64_t left = blob_bytes;
  for (const auto& w : where) {
    if (!w.is_array() || w.size() != 2 || !w[0].is_string() || !w[1].is_number_unsigned())
      fail("malformed message: a \"$blobs\" entry is not [pointer, length]: ", w.dump());
    uint64_t len = w[1].get<uint64_t>();
    if (len > left) fail("malformed message: its \"$blobs\" add up to more than the ", blob_bytes, " bytes sent");
    left -= len;
    std::vector<uint8_t> b(len);
    if (len && !read_exact(fd, reinterpret_cast<char*>(b.data()), len, deadline, forever))
      fail("connection closed in the middle of a message");
    // Only where the text holds a null: a pointer must not make members,
    // grow an array (to any index it names) or replace a field.
    json* slot = nullptr;
    try {
      slot = &msg.at(json::json_pointer(w[0].get<std::string>()));
    } catch (const json::exception& e) {
      fail("malformed message: \"$blobs\" pointer ", w[0].dump(), ": ", e.what());
    }
    if (!slot->is_null()) fail("malformed message: \"$blobs\" pointer ", w[0].dump(), " names a value, not a null");
    *slot = json::binary(std::move(b));
  }
  if (left) fail("malformed message: ", left, " bytes sent that no \"$blobs\" entry claims");
  return msg;
}

json text_payloads(const json& v, std::vector<std::string>* where) {
  return map_binaries(v, "", [&](const json::binary_t& b, const std::string& at) {
    where->push_back(at);
    return json(base64_encode(std::string_view(reinterpret_cast<const char*>(b.data()), b.size())));
  });
}

void binary_payloads(json& v, const std::vector<std::string>& where) {
  for (const auto& at : where) {
    json* slot = nullptr;
    try {
      slot = &v.at(json::json_pointer(at));
    } catch (const json::exception&) {
      continue;  // not ours to mend: it stays as it is
    }
    if (!slot->is_string()) continue;
    auto bytes = base64_decode(slot->get_ref<const std::string&>());
    if (bytes) *slot = json::binary(std::vector<uint8_t>(bytes->begin(), bytes->end()));
  }
}

}  // namespace thaw::container
