#include "runtime/server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <thread>

#include "common/error.h"
#include "common/io.h"
#include "common/unix_address.h"
#include "container/channel.h"

namespace thaw::runtime {

using nlohmann::json;

Server::Server(Runtime& rt, std::string path) : rt_(rt), path_(std::move(path)) {
  sockaddr_un addr = unix_address(path_);
  {
    // A runtime answering there keeps its socket: taking the path over
    // would make it unreachable, and the path vanish when it stops.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      fail("another thaw runtime is listening on ", path_, ": stop it first, or give another --socket");
  }
  listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_) fail_errno("socket");
  ::unlink(path_.c_str());
  if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail_errno("bind ", path_);
  if (::listen(listen_.get(), 64) != 0) fail_errno("listen ", path_);
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) fail_errno("eventfd");
}

void Server::stop() {
  {
    std::lock_guard<std::mutex> lock(tick_mu_);
    stop_ = true;
  }
  tick_cv_.notify_all();
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_.get(), &one, sizeof one);  // never read: stays readable
  (void)ignored;
}

bool Server::wait_readable(int fd) {
  while (!stop_) {
    struct pollfd p[2] = {{fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno("poll");
    if (p[0].revents) return !stop_;
  }
  return false;
}

Server::~Server() {
  stop();
  listen_.reset();
  clients_.join_all();
  ::unlink(path_.c_str());
}

void Server::run() {
  // Scaling down stops containers, which may take seconds (@exit hooks):
  // never in the way of accepting clients.
  std::thread ticker([this] {
    std::unique_lock<std::mutex> lock(tick_mu_);
    while (!tick_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_.load(); })) {
      lock.unlock();
      rt_.tick();
      lock.lock();
    }
  });
  while (wait_readable(listen_.get())) {
    int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    clients_.start([this, c] { serve_client(UniqueFd(c)); });
  }
  ticker.join();
}

// One connection: requests are read here; each call runs in a thread of
// its own and replies when done, so many may be in flight.
void Server::serve_client(UniqueFd fd) {
  container::Channel ch(fd.get());
  std::mutex mu;
  std::map<std::string, std::string> spawned;  // the client's id -> FunctionCall id
  ThreadSet calls;
  auto reply = [&](const json& m) {
    try {
      ch.send(m);
    } catch (const container::MessageTooLarge& e) {
      // Nothing was sent: the client must hear why rather than wait forever.
      try {
        ch.send({{"type", m.value("type", "result")}, {"id", m.value("id", json())}, {"ok", false},
                 {"error", cat("the reply cannot be sent: ", e.what())}});
      } catch (const std::exception&) {
      }
    } catch (const std::exception&) {
      // the client went away; its calls still finish
    }
  };
  // A `get` waiting for a call gives up when its client has gone or the
  // server stops.
  auto abandoned = [this, cfd = fd.get()] {
    if (stop_) return true;
    struct pollfd p = {cfd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
  };
  auto handle = [&](json& msg, const json& id) {
    std::string type = msg.value("type", "");
    if (type == "call") {
      calls.start([&, msg] {
        // A streamed generator's values reach the client as they come.
        YieldSink to_client;
        // It throws when the client has gone, which cancels the call.
        if (msg.value("stream", false)) to_client = [&](const json& y) { ch.send(y); };
        reply(rt_.call(msg, true, to_client));
      });
    } else if (type == "spawn") {
      msg.erase("stream");  // a spawned call's result is fetched whole
      std::string call_id;
      try {
        call_id = rt_.calls().begin(cat(msg.value("app", ""), ".", msg.value("function", "")));
      } catch (const Error& e) {
        reply({{"type", "error"}, {"id", id}, {"error", cat("spawn: ", e.what())}});
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        spawned[id.dump()] = call_id;
      }
      reply({{"type", "spawned"}, {"id", id}, {"call_id", call_id}});
      // The call goes on if the client goes: its result is kept for any
      // process to read (FunctionCall.from_id).
      calls.start([&, msg, call_id] {
        json r;
        try {
          r = rt_.call(msg, true, {}, rt_.calls().cancel_check(call_id));
        } catch (const std::exception& e) {
          r = {{"type", "result"}, {"ok", false}, {"error", e.what()}, {"traceback", ""}};
        }
        rt_.calls().finish(call_id, r);
      });
    } else if (type == "get") {
      // By FunctionCall id (any process), or by the id of a spawn sent on
      // this connection.
      std::string call_id = msg.value("call_id", "");
      bool by_spawn = call_id.empty();
      if (by_spawn) {
        std::lock_guard<std::mutex> lock(mu);
        auto it = spawned.find(id.dump());
        if (it != spawned.end()) call_id = it->second;
      }
      if (call_id.empty()) {
        reply({{"type", "error"}, {"id", id}, {"error", "no spawned call with this id"}});
        return;
      }
      std::optional<double> timeout;
      if (msg.contains("timeout") && msg["timeout"].is_number()) timeout = msg["timeout"].get<double>();
      calls.start([&, call_id, id, timeout, by_spawn] {
        json r;
        try {
          r = rt_.calls().wait(call_id, timeout, abandoned);
        } catch (const std::exception& e) {
          r = {{"type", "error"}, {"error", cat("function call ", call_id, ": ", e.what())}};
        }
        if (by_spawn && r.value("type", "") != "timeout") {
          std::lock_guard<std::mutex> lock(mu);
          spawned.erase(id.dump());  // answered: the client asks no more
        }
        r["id"] = id;
        reply(r);
      });
    } else if (type == "cancel") {
      json r = rt_.calls().cancel(msg.value("call_id", ""));
      r["id"] = id;
      reply(r);
    } else if (type == "autoscaler") {
      reply(rt_.update_autoscaler(msg));
    } else if (type == "lookup") {
      reply(rt_.lookup(msg));
    } else if (type == "lookup_app") {
      reply(rt_.lookup_app(msg));
    } else if (type == "stats") {
      reply(rt_.stats(msg));
    } else if (type == "ping") {
      reply({{"type", "pong"}, {"id", id}});
    } else {
      reply({{"type", "error"}, {"id", id}, {"error", "unknown request type '" + type + "'"}});
    }
  };
  while (wait_readable(fd.get())) {
    std::optional<json> m;
    try {
      // A client that started a message sends the rest of it at once.
      m = container::recv_message(fd.get(), 30000);
    } catch (const std::exception& e) {  // Error, or bad_alloc for a length it cannot hold
      reply({{"type", "error"}, {"id", nullptr}, {"error", e.what()}});
      break;
    }
    if (!m) break;
    json id = m->value("id", json());
    try {
      handle(*m, id);
    } catch (const std::exception& e) {
      // A request of the wrong shape (a field of the wrong type) is
      // refused; the connection and the runtime go on.
      reply({{"type", "error"}, {"id", id}, {"error", cat("bad request: ", e.what())}});
    }
  }
  calls.join_all();
}

namespace {

std::string private_socket_path() {
  const char* dir = std::getenv("TMPDIR");
  return cat(dir && *dir ? dir : "/tmp", "/thaw-", ::getpid(), "-", random_hex(4), ".sock");
}

}  // namespace

PrivateServer::PrivateServer(Runtime& rt) : server_(rt, private_socket_path()) {
  thread_ = std::thread([this] { server_.run(); });
}

PrivateServer::~PrivateServer() {
  server_.stop();
  thread_.join();
}

}  // namespace thaw::runtime
