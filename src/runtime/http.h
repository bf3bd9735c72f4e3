// The little of HTTP/1.1 that `thaw serve --http` speaks: one request per
// connection (the answer closes it), bodies by Content-Length or chunked,
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

// One request from `fd`, all of it within `timeout_ms`; nullopt when the
// peer closed before sending anything. Throws HttpError (400, 408, 413, 431).
std::optional<HttpRequest> read_request(int fd, int timeout_ms, size_t max_body);

// A whole response, `Connection: close` and Content-Length added; a HEAD
// request's answer leaves the body out.
std::string format_response(int status, const HttpHeaders& headers, std::string_view body, bool head_only = false);
// A response whose body follows in chunks (format_chunk each; an empty
// chunk ends it), `Connection: close` added: for answers streamed as they
// come. Without `chunked` (an HTTP/1.0 client) the body follows as it is,
// and closing the connection ends it.
std::string format_stream_head(int status, const HttpHeaders& headers, bool chunked = true);
std::string format_chunk(std::string_view data);

const char* reason_phrase(int status);

}  // namespace thaw::runtime
