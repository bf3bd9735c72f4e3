// The runtime's side of the control channel of one container
// (docs/runtime-protocol.md, "Runtime <-> worker"). Until start() the
// channel is read synchronously (expect); from then on a reader thread
// hands each result to the call waiting for it, so that a container taking
// concurrent inputs (@concurrent) can have several calls in flight.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "container/launch.h"

namespace thaw::runtime {

// The worker could not get ready (the app raised while imported or in an
// @enter method): its message, with the traceback for the caller.
class WorkerFailed : public Error {
 public:
  WorkerFailed(const std::string& what, std::string traceback) : Error(what), traceback_(std::move(traceback)) {}
  const std::string& traceback() const { return traceback_; }

 private:
  std::string traceback_;
};

// No result came within the time the caller allowed.
class CallTimedOut : public Error {
 public:
  using Error::Error;
};

// The caller cancelled the call (FunctionCall.cancel()) before its result.
class CallCancelled : public Error {
 public:
  using Error::Error;
};

// Asked about every 100 ms while a call waits; true: its caller cancelled
// it (runtime/call_store.h).
using CancelCheck = std::function<bool()>;

// Receives the `yield` messages of a streamed generator call, in order, on
// the calling thread (docs/runtime-protocol.md, "Generators"). Throwing
// means the caller has gone: the generator is cancelled.
using YieldSink = std::function<void(const nlohmann::json&)>;

class Worker {
 public:
  Worker(std::unique_ptr<container::Container> c, std::string label);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  container::Container& container() { return *c_; }
  const std::string& label() const { return label_; }

  // Before start(): waits for a message of this type; throws if the worker
  // reports an error, dies, or takes longer than timeout_s.
  nlohmann::json expect(const std::string& type, double timeout_s);
  // Sends start, waits for ready (returned: it holds the worker's
  // timings), then serves calls.
  nlohmann::json start(const nlohmann::json& env, bool restored, uint64_t seed, bool gpu_visible, double timeout_s);
  // Runs one call (a client's call request) and returns the worker's result
  // message. Thread-safe. Throws if the worker dies or takes longer than
  // timeout_s: the container is unusable then. A streamed generator's
  // values go to on_yield as they come, before the result.
  // Throws CallCancelled when `cancelled` says so first.
  nlohmann::json call(const nlohmann::json& request, double timeout_s, const YieldSink& on_yield = {},
                      const CancelCheck& cancelled = {});
  bool alive();
  // Shuts the control channel from any thread: a wait for the worker
  // (expect, start) fails at once, and the container is stopped by it.
  void abort();
  // Asks for a clean exit (@exit runs), then makes sure the container is gone.
  void shutdown(double grace_s);

 private:
  void read_loop();
  void mark_dead(const std::string& why);

  std::unique_ptr<container::Container> c_;
  std::string label_;
  std::mutex send_mu_;
  std::mutex mu_;  // everything below
  std::condition_variable cv_;
  // A call in flight. The reader only queues what comes for it; the
  // call's own thread hands the values on, so a slow consumer of one
  // generator never holds up the other calls of the container.
  struct Pending {
    std::optional<nlohmann::json> result;
    bool streams = false;           // it has a sink
    std::deque<nlohmann::json> values;
    size_t queued_bytes = 0;
    bool cancelled = false;         // values arriving now are dropped
    bool overflowed = false;        // cancelled for too many values waiting
  };
  void cancel_locked(uint64_t id, Pending& p);
  std::map<uint64_t, Pending> pending_;
  uint64_t next_id_ = 1;
  bool dead_ = false;
  std::string dead_reason_;
  bool shut_down_ = false;
  std::thread reader_;
};

// A random 64-bit seed from the kernel.
uint64_t fresh_seed();

}  // namespace thaw::runtime
