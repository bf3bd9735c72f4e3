// `thaw serve --http HOST:PORT`: deployed functions marked @fastapi_endpoint,
// @web_endpoint, @asgi_app or @wsgi_app answer HTTP requests at
// http://HOST:PORT/<app>/<label or name>[/...]. Each request becomes a call
// (so containers, snapshots, retries and timeouts are the function's as for
// .remote()) that carries the request; the worker's thaw._web turns it into
// the function's arguments (or feeds it to the ASGI/WSGI app) and the answer
// back into a response, which is written here.
#pragma once
#include <atomic>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "runtime/http.h"
#include "runtime/runtime.h"
#include "runtime/thread_set.h"

namespace thaw::runtime {

// Where a request goes: the function (and a class's method) and its web
// settings ({"kind", "method", "label"}).
struct WebRoute {
  std::string function;
  std::optional<std::string> method;
  nlohmann::json web;
};

// Every web endpoint of `app`, with its URL path segment: its label, or
// else its name (`Class.method` for a method).
std::vector<std::pair<std::string, WebRoute>> web_routes(const AppDesc& app);

// The endpoint of `app` whose segment is `segment`; nullopt when none is.
std::optional<WebRoute> find_web_route(const AppDesc& app, const std::string& segment);

// "host:port", "port" or ":port" (all addresses: "0.0.0.0:port").
std::pair<std::string, int> parse_listen_address(const std::string& text);

class WebFront {
 public:
  // Binds and listens (port 0: one the kernel picks; see url()).
  WebFront(Runtime& rt, const std::string& address);
  // Stops accepting and waits for the requests in flight.
  ~WebFront();
  WebFront(const WebFront&) = delete;
  WebFront& operator=(const WebFront&) = delete;

  // "http://127.0.0.1:8000": what the SDK's get_web_url() builds on.
  const std::string& url() const { return url_; }
  void run();
  void stop();

 private:
  void serve(UniqueFd conn, const std::string& client);
  // The response to one parsed request; "" when it was streamed to conn
  // already (an answer that comes in pieces). `keep`: whether the client
  // wants the connection kept; cleared when the answer cannot keep it (a
  // stream ended by the close, or cut short).
  std::string answer(const HttpRequest& req, const std::string& client, int conn, bool& keep);

  Runtime& rt_;
  UniqueFd listen_;
  UniqueFd wake_;
  std::string host_;
  int port_ = 0;
  std::string url_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int> in_flight_{0};
  std::mutex open_mu_;
  std::set<int> open_;  // connections being served (stop() shuts them down)
  ThreadSet conns_;
};

}  // namespace thaw::runtime
