// The little of HTTP/1.1 that `thaw serve --http` speaks: requests one
// after another on a connection (kept open between them unless a side says
// `Connection: close`), bodies by Content-Length or chunked,
// `Expect: 100-continue` answered. Kept apart from the front that routes
// requests, so that parsing is tested on its own.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace thaw::runtime {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;   // as sent (upper-case by convention)
  std::string target;   // the request target: path and query
  std::string path;     // target up to '?', still percent-encoded
  std::string query;    // after '?', "" when none
  std::string version;  // "HTTP/1.1"
  HttpHeaders headers;  // names lower-case, in order
  std::string body;

  // The first header of that (lower-case) name, or "".
  std::string header(std::string_view name) const;
};

// A request that cannot be served, with the status that says why.
class HttpError : public Error {
 public:
  HttpError(int status, const std::string& what) : Error(what), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// The request line and headers (without the empty line that ends them).
HttpRequest parse_request_head(std::string_view head);

// The requests of one connection, read one after another. Bytes that came
// after one request (a client may pipeline) are kept for the next.
class HttpConnection {
 public:
  explicit HttpConnection(int fd) : fd_(fd) {}

  // The next request: nullopt when the client closed, or sent no byte of
  // one within `idle_ms`. Once its first byte is in, all of it must come
  // within `timeout_ms`. Throws HttpError (400, 408, 413, 431, 501, 505).
  std::optional<HttpRequest> next(int idle_ms, int timeout_ms, size_t max_body);

 private:
  int fd_;
  std::string buf_;
};

// One request from `fd`, all of it within `timeout_ms`; nullopt when the
// peer closed before sending anything (for a connection that serves one).
std::optional<HttpRequest> read_request(int fd, int timeout_ms, size_t max_body);

// Whether the client wants the connection kept for another request:
// HTTP/1.1 unless it says `Connection: close`; HTTP/1.0 only if it says
// `Connection: keep-alive`.
bool wants_keep_alive(const HttpRequest& req);

// A whole response, Content-Length and `Connection` (keep-alive or close)
// added; a HEAD request's answer leaves the body out.
std::string format_response(int status, const HttpHeaders& headers, std::string_view body, bool head_only = false,
                            bool keep_alive = false);
// A response whose body follows in chunks (format_chunk each; an empty
// chunk ends it): for answers streamed as they come. Without `chunked` (an
// HTTP/1.0 client) the body follows as it is, and closing the connection
// ends it, so such a stream never keeps its connection.
std::string format_stream_head(int status, const HttpHeaders& headers, bool chunked = true, bool keep_alive = false);
std::string format_chunk(std::string_view data);

const char* reason_phrase(int status);

}  // namespace thaw::runtime
