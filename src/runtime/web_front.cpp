#include "runtime/web_front.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "common/base64.h"
#include "common/io.h"
#include "runtime/proxy_auth.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

constexpr int kRequestTimeoutMs = 30000;
// How long a kept connection may wait for its next request (uvicorn's
// default): each holds a thread meanwhile.
constexpr int kKeepAliveIdleMs = 5000;
constexpr size_t kMaxBody = 64u << 20;

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

constexpr int kSocketTimeoutS = 30;
// Connections served at once; more are answered 503 at once (each holds a
// thread until its call ends, or a kept one is idle too long).
constexpr int kMaxConnections = 256;
// Connections are kept for another request only while fewer than this many
// are open: idle kept ones (connection pools hold dozens) must leave room
// for new clients.
constexpr int kMaxKeptConnections = kMaxConnections * 3 / 4;

std::string json_response(int status, const json& body, bool head_only, bool keep_alive) {
  // Replace, not throw: the text may quote bytes a client sent.
  return format_response(status, {{"content-type", "application/json"}},
                         body.dump(-1, ' ', false, json::error_handler_t::replace), head_only, keep_alive);
}

// For the log: a request target with its control characters escaped.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < ' ' || c == 127) out += cat("\\x", to_hex(&c, 1));
    else out += char(c);
  }
  return out;
}

// After an early answer the client may still be sending its body: closing
// with unread data makes the kernel reset the connection, and the client
// may see that instead of the answer. Read a little of it first.
void drain(int fd) {
  ::shutdown(fd, SHUT_WR);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  size_t total = 0;
  char buf[16384];
  while (total < (1u << 20) && std::chrono::steady_clock::now() < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    total += size_t(n);
  }
}

std::string detail(int status, const std::string& text, bool head_only, bool keep_alive = false) {
  return json_response(status, {{"detail", text}}, head_only, keep_alive);
}

}  // namespace

std::vector<std::pair<std::string, WebRoute>> web_routes(const AppDesc& app) {
  std::vector<std::pair<std::string, WebRoute>> out;
  for (const auto& f : app.functions) {
    const json& c = f.config;
    if (f.kind != "class") {
      auto it = c.find("web_endpoint");
      if (it != c.end() && it->is_object()) out.push_back({it->value("label", f.name), {f.name, std::nullopt, *it}});
      continue;
    }
    auto ms = c.find("methods");
    if (ms == c.end() || !ms->is_object()) continue;
    for (const auto& [m, info] : ms->items()) {
      if (!info.is_object() || !info.contains("web_endpoint") || !info["web_endpoint"].is_object()) continue;
      const json& w = info["web_endpoint"];
      out.push_back({w.value("label", f.name + "." + m), {f.name, m, w}});
    }
  }
  return out;
}

std::optional<WebRoute> find_web_route(const AppDesc& app, const std::string& segment) {
  for (auto& [seg, route] : web_routes(app))
    if (seg == segment) return route;
  return std::nullopt;
}

std::pair<std::string, int> parse_listen_address(const std::string& text) {
  std::string host = "127.0.0.1", port = text;
  size_t colon = text.rfind(':');
  if (colon != std::string::npos) {
    host = colon == 0 ? "0.0.0.0" : text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535)
    fail("--http ", text, ": give PORT, HOST:PORT or :PORT (all addresses), a port from 0 to 65535");
  in_addr a{};
  if (::inet_pton(AF_INET, host.c_str(), &a) != 1)
    fail("--http ", text, ": '", host, "' is not an IPv4 address (such as 127.0.0.1 or 0.0.0.0)");
  return {host, std::stoi(port)};
}

WebFront::WebFront(Runtime& rt, const std::string& address) : rt_(rt) {
  auto [host, port] = parse_listen_address(address);
  host_ = host;
  listen_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_) fail_errno("socket");
  int one = 1;
  ::setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
  if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    fail_errno("--http ", address, ": bind (is another server on that port?)");
  if (::listen(listen_.get(), 128) != 0) fail_errno("listen on ", address);
  socklen_t len = sizeof sa;
  if (::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&sa), &len) != 0) fail_errno("getsockname");
  port_ = ntohs(sa.sin_port);
  // Links given out must be reachable: "all addresses" is reached at the loopback.
  url_ = cat("http://", host == "0.0.0.0" ? "127.0.0.1" : host, ":", port_);
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) fail_errno("eventfd");
}

WebFront::~WebFront() {
  stop();
  listen_.reset();
  conns_.join_all();
}

void WebFront::stop() {
  stop_ = true;
  {
    // Requests still being read or answered end now: shutdown wakes a
    // thread blocked on its connection.
    std::lock_guard<std::mutex> lock(open_mu_);
    for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
  }
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
  (void)ignored;
}

void WebFront::run() {
  while (!stop_) {
    struct pollfd p[2] = {{listen_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno("poll");
    if (stop_ || !p[0].revents) continue;
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    int c = ::accept4(listen_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (c < 0) {
      // Out of fds: the listening socket stays readable; do not spin on it.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    UniqueFd conn(c);
    // A client that stops reading (or sending) must not hold a thread for good.
    timeval tv{kSocketTimeoutS, 0};
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char ip[INET_ADDRSTRLEN] = "";
    ::inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
    std::string client = cat(ip, ":", ntohs(peer.sin_port));
    bool busy = in_flight_.load() >= kMaxConnections;
    if (!busy) {
      try {
        in_flight_++;
        auto shared = std::make_shared<UniqueFd>(std::move(conn));
        conns_.start([this, shared, client] {
          serve(std::move(*shared), client);
          in_flight_--;
        });
        continue;
      } catch (const std::exception&) {
        in_flight_--;  // no thread for it (out of memory or threads)
        busy = true;
      }
    }
    if (conn) {
      std::string out = detail(503, "too many requests in flight; try again", false);
      ssize_t ignored = ::send(conn.get(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      (void)ignored;
    }
  }
}

void WebFront::serve(UniqueFd conn, const std::string& client) {
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    if (stop_) return;
    open_.insert(conn.get());
  }
  // Requests one after another while both sides keep the connection; an
  // error closes it, since what follows the bad request cannot be trusted.
  HttpConnection http(conn.get());
  for (bool first = true, keep = true; keep && !stop_; first = false) {
    std::string out;
    int status = 0;
    std::string why;
    keep = false;
    try {
      auto req = http.next(first ? kRequestTimeoutMs : kKeepAliveIdleMs, kRequestTimeoutMs, kMaxBody);
      if (!req) break;
      keep = wants_keep_alive(*req) && !stop_ && in_flight_.load() <= kMaxKeptConnections;
      out = answer(*req, client, conn.get(), keep);
    } catch (const HttpError& e) {
      status = e.status();
      why = e.what();
    } catch (const std::exception& e) {
      status = 500;
      why = e.what();
    } catch (...) {
      status = 500;
      why = "unexpected error";
    }
    try {
      // Built outside the handlers: nothing thrown here may escape the thread.
      if (status) {
        keep = false;
        out = detail(status, why, false);
      }
      if (!out.empty()) write_all(conn.get(), out.data(), out.size(), "the HTTP client");
      if (status) drain(conn.get());
    } catch (...) {
      keep = false;  // the client went away, or stopped reading
    }
  }
  std::lock_guard<std::mutex> lock(open_mu_);
  open_.erase(conn.get());
  conn.reset();  // closed before another connection can take its number
}

std::string WebFront::answer(const HttpRequest& req, const std::string& client, int conn, bool& keep) {
  bool head = req.method == "HEAD";
  auto detail = [&](int status, const std::string& text, bool head_only) {
    return runtime::detail(status, text, head_only, keep);
  };
  // /<app>/<endpoint>[/rest]
  std::string_view p = req.path;
  size_t a_end = p.find('/', 1);
  std::string app = percent_decode(p.substr(1, a_end == std::string_view::npos ? std::string_view::npos : a_end - 1));
  if (app.empty() || a_end == std::string_view::npos)
    return detail(404, "web endpoints are at /<app>/<label or function name>", head);
  size_t e_end = p.find('/', a_end + 1);
  std::string segment = percent_decode(p.substr(a_end + 1, e_end == std::string_view::npos ? std::string_view::npos
                                                                                             : e_end - a_end - 1));
  std::string rest = e_end == std::string_view::npos ? "/" : std::string(p.substr(e_end));
  std::string root = std::string(p.substr(0, e_end == std::string_view::npos ? p.size() : e_end));
  Deployed d;
  try {
    d = load_deployed(rt_.context().store, app);
  } catch (const std::exception& e) {
    return detail(404, e.what(), head);
  }
  auto route = find_web_route(d.desc, segment);
  if (!route) return detail(404, cat("app '", app, "' has no web endpoint '", segment, "'"), head);
  if (route->web.value("requires_proxy_auth", false) &&
      !ProxyAuth(rt_.context().store.home()).check(req.header("modal-key"), req.header("modal-secret")))
    return format_response(401, {{"content-type", "application/json"}, {"www-authenticate", "Modal-Key"}},
                           json{{"detail", "missing or invalid proxy auth token: send the Modal-Key and Modal-Secret "
                                           "headers of a token from `thaw proxy-auth create`"}}.dump(),
                           head, keep);
  std::string kind = route->web.value("kind", "");
  // A function's own URL is its whole path: nothing may follow it, but
  // for the pages FastAPI serves beside an endpoint with docs=True.
  bool takes_paths = kind == "asgi_app" || kind == "wsgi_app" || kind == "web_server" ||
                     route->web.value("docs", false);
  if (!takes_paths && rest != "/") return detail(404, cat("no such path under ", root), head);
  json headers = json::array();
  for (const auto& [k, v] : req.headers) headers.push_back({k, v});
  size_t colon = client.rfind(':');
  json request = {{"method", req.method},
                  {"path", rest},
                  {"query", req.query},
                  {"headers", headers},
                  {"body_b64", base64_encode(req.body)},
                  {"root_path", root},
                  {"client", {client.substr(0, colon), std::atoi(client.c_str() + colon + 1)}},
                  {"server", {host_, port_}},
                  {"scheme", "http"}};
  json options = json::object();
  for (const char* k : {"method", "port", "startup_timeout", "docs"})
    if (route->web.contains(k)) options[k] = route->web[k];
  json msg = {{"type", "call"},
              {"id", cat("web-", next_id_++)},
              {"app", app},
              {"function", route->function},
              {"method", route->method ? json(*route->method) : json()},
              {"args", nullptr},
              {"kwargs", nullptr},
              {"args_json", json::array()},
              {"kwargs_json", json::object()},
              {"mode", "deployed"},
              {"result_format", "json"},
              {"web_request", {{"kind", kind}, {"options", options}, {"request", request}}}};
  // An answer that comes in pieces (a @web_server's server-sent events, a
  // StreamingResponse of an endpoint or an ASGI app) is passed on as it
  // comes, in chunks: the worker streams it as values, the first with the
  // status and headers. Other answers come whole, as the result.
  // An HTTP/1.0 client takes no chunks: its answer's end is the
  // connection's.
  bool chunked = req.version != "HTTP/1.0";
  bool streamed = false;
  YieldSink to_client;
  CancelCheck client_gone;
  if (!head) {
    msg["stream"] = true;
    to_client = [&](const json& y) {
      const json& v = y.value("value_json", json());
      std::string out;
      if (!streamed) {
        int status = v.value("status", 0);
        // 1xx are interim answers, and a body needs a status that has one.
        if (status < 200 || status > 999 || status == 204 || status == 304)
          fail(app, ".", route->function, " streamed an answer with status ", status);
        HttpHeaders hs;
        for (const auto& h : v.value("headers", json::array()))
          if (h.is_array() && h.size() == 2 && h[0].is_string() && h[1].is_string()) hs.emplace_back(h[0], h[1]);
        // Only a chunked stream ends on its own: another is ended by the close.
        keep = keep && chunked;
        out = format_stream_head(status, hs, chunked, keep);
        streamed = true;
      } else if (auto chunk = base64_decode(v.value("chunk_b64", std::string())); chunk && !chunk->empty()) {
        out = chunked ? format_chunk(*chunk) : *chunk;
      }
      // Throws when the client has gone: the worker stops the stream.
      if (!out.empty()) write_all(conn, out.data(), out.size(), "the HTTP client");
    };
    // A client that goes while the answer is silent (an idle event
    // stream), or `thaw serve` stopping, cancels it too: the worker ends it.
    client_gone = [this, conn] {
      if (stop_) return true;
      // Its close (even behind bytes it pipelined and never saw answered),
      // or an error; more bytes alone are not a goodbye. A client that
      // only half-closes after its requests reads as gone too.
      struct pollfd p = {conn, POLLRDHUP, 0};
      return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
    };
  }
  json r = rt_.call(msg, true, to_client, client_gone);
  std::string name = route->method ? cat(route->function, ".", *route->method) : route->function;
  if (streamed) {
    // Ended cleanly: the last chunk. Otherwise the connection closes
    // without it, which tells the client the answer was cut short.
    if (r.value("ok", false) && chunked) {
      std::string end = format_chunk("");
      try {
        write_all(conn, end.data(), end.size(), "the HTTP client");
      } catch (const std::exception&) {
        keep = false;
      }
    } else {
      keep = false;
      rt_.context().log.line(cat(printable(req.method), " ", printable(req.target), " (", app, ".", name,
                                 ") failed while its answer was streamed: ", r.value("error", std::string("?"))));
    }
    return "";
  }
  if (!r.value("ok", false)) {
    std::string err = r.value("error", std::string("the call failed"));
    rt_.context().log.line(cat(printable(req.method), " ", printable(req.target), " (", app, ".", name, ") failed: ", err));
    if (err.rfind("FunctionTimeoutError", 0) == 0) return detail(504, err, head);
    return format_response(500, {{"content-type", "text/plain; charset=utf-8"}}, "Internal Server Error", head, keep);
  }
  const json& v = r.value("value_json", json());
  auto body = v.is_object() ? base64_decode(v.value("body_b64", std::string())) : std::nullopt;
  if (!body || !v.contains("status") || !v["status"].is_number_integer())
    return detail(502, cat(app, ".", name, " answered without a response"), head);
  int status = v["status"].get<int>();
  // 1xx are interim answers: one of them as the final answer would leave
  // the client waiting for the real one.
  if (status < 200 || status > 999) return detail(502, cat(app, ".", name, " answered with status ", status), head);
  HttpHeaders out;
  for (const auto& h : v.value("headers", json::array()))
    if (h.is_array() && h.size() == 2 && h[0].is_string() && h[1].is_string()) out.emplace_back(h[0], h[1]);
  return format_response(status, out, *body, head, keep);
}

}  // namespace thaw::runtime
