// The runtime's client socket (docs/runtime-protocol.md, "Client <->
// runtime"): a unix stream socket, a thread per client connection and one
// per call in flight, so that `map` and `spawn` run calls concurrently.
#pragma once
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "runtime/runtime.h"
#include "runtime/thread_set.h"

namespace thaw::runtime {

class Server {
 public:
  // Binds and listens at path (an existing socket file there is replaced).
  Server(Runtime& rt, std::string path);
  // Stops accepting, waits for the connections' calls, removes the socket.
  ~Server();

  const std::string& path() const { return path_; }
  // Accepts clients until stop() (from any thread or a signal watcher);
  // meanwhile a thread runs rt.tick() about once a second.
  void run();
  void stop();

 private:
  void serve_client(UniqueFd fd);
  // Waits until fd is readable or stop(); false once stopping.
  bool wait_readable(int fd);

  Runtime& rt_;
  std::string path_;
  UniqueFd listen_;
  UniqueFd wake_;  // an eventfd that stop() makes readable for every poller
  std::atomic<bool> stop_{false};
  std::mutex tick_mu_;
  std::condition_variable tick_cv_;
  ThreadSet clients_;
};

// A Server on a fresh socket in $TMPDIR (or /tmp), served from a thread of
// its own: `thaw run` and `thaw call` use one, so that calls made from
// inside their containers come back to them.
class PrivateServer {
 public:
  explicit PrivateServer(Runtime& rt);
  // Stops serving and waits for the calls in flight.
  ~PrivateServer();
  const std::string& path() const { return server_.path(); }

 private:
  Server server_;
  std::thread thread_;
};

}  // namespace thaw::runtime
