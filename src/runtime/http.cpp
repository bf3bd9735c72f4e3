#include "runtime/http.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/io.h"

namespace thaw::runtime {

namespace {

constexpr size_t kMaxHead = 64 * 1024;
// Told to clients so that they stop reusing a connection before the front
// closes it (web_front.cpp's idle limit).
constexpr const char* kKeepAliveHeaders = "connection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\n";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim_ws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Bytes from the connection into `buf`, each read within what is left of
// the deadline.
class Reader {
 public:
  Reader(int fd, std::string& buf, int timeout_ms)
      : fd_(fd), deadline_(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms)), buf_(buf) {}

  // Appends what arrives to buf_; false at EOF.
  bool more() {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw HttpError(408, "the request did not arrive in time");
      struct pollfd p = {fd_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail_errno("poll");
      if (r == 0) continue;
      char chunk[16384];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) fail_errno("read the request");
      if (n == 0) return false;
      buf_.append(chunk, static_cast<size_t>(n));
      return true;
    }
  }

  // Until `delim` is in the buffer (within `limit` bytes): what precedes
  // it, taken out with it. nullopt at EOF before any byte.
  std::optional<std::string> until(std::string_view delim, size_t limit, int status, const char* what) {
    for (;;) {
      size_t at = buf_.find(delim);
      if (at != std::string::npos) {
        std::string out = buf_.substr(0, at);
        buf_.erase(0, at + delim.size());
        return out;
      }
      if (buf_.size() > limit) throw HttpError(status, what);
      bool had = !buf_.empty();
      if (!more()) {
        if (!had) return std::nullopt;
        throw HttpError(400, "the connection closed in the middle of the request");
      }
    }
  }

  // Drops the empty lines a client may send before a request (RFC 9112
  // 2.2: after a body, some add a CRLF); false at EOF before any request.
  bool skip_blank_lines() {
    for (;;) {
      size_t n = 0;
      while (n + 1 < buf_.size() && buf_[n] == '\r' && buf_[n + 1] == '\n') n += 2;
      buf_.erase(0, n);
      if (!buf_.empty() && buf_ != "\r") return true;
      if (!more()) return false;
    }
  }

  std::string take(size_t n) {
    while (buf_.size() < n)
      if (!more()) throw HttpError(400, "the connection closed in the middle of the body");
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

 private:
  int fd_;
  std::chrono::steady_clock::time_point deadline_;
  std::string& buf_;
};

// Whether a byte (or the end) comes within `ms`.
bool readable_within(int fd, int ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    struct pollfd p = {fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno("poll");
    return r > 0;
  }
}

// The tokens of a Connection header, lower-case ("close", "keep-alive").
bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim_ws(list.substr(0, comma));
    if (item.size() == token.size() &&
        std::equal(item.begin(), item.end(), token.begin(),
                   [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
      return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

std::string read_chunked(Reader& r, size_t max_body) {
  std::string body;
  for (;;) {
    auto line = r.until("\r\n", 1024, 400, "a chunk size line is too long");
    if (!line) throw HttpError(400, "the connection closed in the middle of the body");
    std::string_view size_text = trim_ws(std::string_view(*line).substr(0, line->find(';')));
    size_t size = 0;
    auto [end, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (size_text.empty() || size_text.size() > 15 || ec != std::errc() || end != size_text.data() + size_text.size())
      throw HttpError(400, "a bad chunk size");
    if (size == 0) break;
    if (body.size() + size > max_body) throw HttpError(413, "the request body is too large");
    body += r.take(size);
    if (r.take(2) != "\r\n") throw HttpError(400, "a chunk does not end with CRLF");
  }
  // Trailer fields, up to the empty line: read and dropped.
  for (;;) {
    auto line = r.until("\r\n", kMaxHead, 431, "the trailer fields are too large");
    if (!line || line->empty()) break;
  }
  return body;
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

HttpRequest parse_request_head(std::string_view head) {
  HttpRequest req;
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  size_t a = line.find(' '), b = line.rfind(' ');
  if (a == std::string_view::npos || b == a) throw HttpError(400, "a malformed request line");
  if (std::any_of(line.begin(), line.end(), [](unsigned char c) { return c < ' ' || c == 127; }))
    throw HttpError(400, "a control character in the request line");
  req.method = std::string(line.substr(0, a));
  req.target = std::string(line.substr(a + 1, b - a - 1));
  req.version = std::string(line.substr(b + 1));
  if (req.version.rfind("HTTP/1.", 0) != 0) throw HttpError(505, "only HTTP/1.x is spoken here");
  if (req.method.empty() || req.target.empty() || req.target[0] != '/')
    throw HttpError(400, "the request target must be a path starting with '/'");
  size_t q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) req.query = req.target.substr(q + 1);
  size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view field = head.substr(pos, end - pos);
    pos = end + 2;
    if (field.empty()) continue;
    size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) throw HttpError(400, "a malformed header line");
    std::string_view name = field.substr(0, colon), value = trim_ws(field.substr(colon + 1));
    // RFC 9112: no whitespace before the colon; and no control characters
    // that could split a line further on (a bare LF, NUL).
    auto bad = [](std::string_view t, bool in_name) {
      return std::any_of(t.begin(), t.end(), [in_name](unsigned char c) {
        return c == 0 || c == '\n' || c == '\r' || (in_name && (c <= ' ' || c == 127));
      });
    };
    if (bad(name, true) || bad(value, false)) throw HttpError(400, "a malformed header line");
    req.headers.emplace_back(lower(name), std::string(value));
  }
  return req;
}

std::optional<HttpRequest> read_request(int fd, int timeout_ms, size_t max_body) {
  return HttpConnection(fd).next(timeout_ms, timeout_ms, max_body);
}

bool wants_keep_alive(const HttpRequest& req) {
  bool close = false, keep = false;
  for (const auto& [k, v] : req.headers) {
    if (k != "connection") continue;
    close = close || has_token(v, "close");
    keep = keep || has_token(v, "keep-alive");
  }
  if (close) return false;
  return req.version == "HTTP/1.1" || keep;
}

std::optional<HttpRequest> HttpConnection::next(int idle_ms, int timeout_ms, size_t max_body) {
  // Between requests a client may say nothing for a while; the request's
  // own deadline starts with its first byte.
  if (buf_.empty() && !readable_within(fd_, idle_ms)) return std::nullopt;
  Reader r(fd_, buf_, timeout_ms);
  int fd = fd_;
  if (!r.skip_blank_lines()) return std::nullopt;
  auto head = r.until("\r\n\r\n", kMaxHead, 431, "the request's header fields are too large");
  if (!head) return std::nullopt;
  HttpRequest req = parse_request_head(*head);
  std::string te, cl;
  bool chunked = false;
  for (const auto& [k, v] : req.headers) {
    if (k == "content-length") {
      // Two lengths that differ: which one the sender meant is unknowable.
      if (!cl.empty() && cl != v) throw HttpError(400, "conflicting Content-Length headers");
      cl = v;
    } else if (k == "transfer-encoding") {
      te = lower(v);
      if (te == "chunked") chunked = true;
      else if (te != "identity") throw HttpError(501, "a transfer-encoding other than chunked is not supported");
    }
  }
  // Two framings at once, or one an HTTP/1.0 peer cannot mean: what the
  // body is (and where the next request starts) is ambiguous, the stuff
  // of request smuggling through a proxy (RFC 9112 6.1, 6.3).
  if (!te.empty() && !cl.empty())
    throw HttpError(400, "both Transfer-Encoding and Content-Length: the body's length is ambiguous");
  if (!te.empty() && req.version == "HTTP/1.0")
    throw HttpError(400, "Transfer-Encoding in an HTTP/1.0 request");
  size_t length = 0;
  if (!chunked && !cl.empty()) {
    if (cl.size() > 18 || cl.find_first_not_of("0123456789") != std::string::npos)
      throw HttpError(400, "a bad Content-Length");
    length = std::stoull(cl);
    if (length > max_body) throw HttpError(413, "the request body is too large");
  }
  // A client that waits to be told before it sends its body, told only
  // once the body's announced size is acceptable.
  if (req.version == "HTTP/1.1" && lower(req.header("expect")) == "100-continue" && (chunked || length > 0)) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    write_all(fd, kContinue.data(), kContinue.size(), "the client");
  }
  if (chunked) req.body = read_chunked(r, max_body);
  else if (length > 0) req.body = r.take(length);
  return req;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
  }
}

namespace {

// The status line and the headers the answer keeps: framing is ours (the
// answer's length or chunks, and whether the connection stays open).
std::string status_and_headers(int status, const HttpHeaders& headers) {
  std::string out = cat("HTTP/1.1 ", status, " ", reason_phrase(status), "\r\n");
  for (const auto& [k, v] : headers) {
    std::string name = lower(k);
    if (name == "content-length" || name == "connection" || name == "transfer-encoding") continue;
    // A header must not smuggle a line of its own.
    if (k.find_first_of("\r\n:") != std::string::npos || v.find_first_of("\r\n") != std::string::npos) continue;
    out += cat(k, ": ", v, "\r\n");
  }
  return out;
}

}  // namespace

std::string format_stream_head(int status, const HttpHeaders& headers, bool chunked, bool keep_alive) {
  return status_and_headers(status, headers) + (chunked ? "transfer-encoding: chunked\r\n" : "") +
         (keep_alive && chunked ? kKeepAliveHeaders : "connection: close\r\n\r\n");
}

std::string format_chunk(std::string_view data) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string out = size;
  out.append(data);
  out += "\r\n";
  return out;
}

std::string format_response(int status, const HttpHeaders& headers, std::string_view body, bool head_only,
                            bool keep_alive) {
  std::string out = status_and_headers(status, headers);
  bool no_body = status == 204 || status == 304 || status < 200;
  if (!no_body) out += cat("content-length: ", body.size(), "\r\n");
  out += keep_alive ? kKeepAliveHeaders : "connection: close\r\n\r\n";
  if (!head_only && !no_body) out.append(body);
  return out;
}

}  // namespace thaw::runtime
