// The containers of one target. A call goes to a container with room for
// it (one input at a time, max_concurrent_inputs with @concurrent, or
// max_batch_size with @batched), or to a new one while there are fewer than
// max_containers; concurrent calls therefore get containers of their own. Idle containers beyond
// min_containers are stopped after scaledown_window.
//
// With autoscaling (`thaw serve`) the pool also keeps min_containers
// running and, as Modal's buffer_containers asks, that many idle containers
// beyond the busy ones while there is load (a call in flight), started in
// the background so that the next call finds one ready; once the load is
// gone they are scaled down like any idle container.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

#include "common/unique_fd.h"
#include "runtime/serialized_files.h"
#include "runtime/snapshots.h"
#include "runtime/target.h"
#include "runtime/thread_set.h"
#include "runtime/worker.h"

namespace thaw::runtime {

// The scaling settings of a pool: the function's, and as update_autoscaler
// changes them while it runs (runtime/autoscaler.h).
struct ScaleLimits {
  int min_containers = 0;
  int max_containers = 0;  // 0: no limit
  int buffer_containers = 0;
  double scaledown_window_s = 60;

  static ScaleLimits of(const FunctionDesc& fn) {
    return {fn.min_containers(), fn.max_containers(), fn.buffer_containers(), fn.scaledown_window_s()};
  }
  bool operator==(const ScaleLimits&) const = default;
};

// What Function.get_current_stats() reports of a pool (Modal's FunctionStats).
struct PoolStats {
  int backlog = 0;  // calls waiting for a container: none had room, or theirs is starting
  int runners = 0;  // containers up or starting, busy or idle
};

class Pool {
 public:
  Pool(Snapshots& snapshots, Target target, bool autoscale)
      : snapshots_(snapshots),
        target_(std::move(target)),
        autoscale_(autoscale),
        limits_(ScaleLimits::of(target_.fn)),
        serialized_hold_(target_.fn.serialized_file.empty() ? UniqueFd() : hold_serialized(target_.fn.serialized_file)) {}
  ~Pool() { shutdown(); }

  const Target& target() const { return target_; }

  // Runs one call; returns a result message (ok or not). Never throws.
  // A streamed generator's values go to on_yield; once one has gone, a
  // failed call is not retried (its caller has seen part of its output).
  // A call cancelled (`cancelled` says so) answers ok:false, cancelled:true;
  // the container running it is stopped once its other inputs are done.
  nlohmann::json call(const nlohmann::json& request, bool use_snapshot = true, const YieldSink& on_yield = {},
                      const CancelCheck& cancelled = {});
  // Starts containers until min_containers are up (serve).
  void warm();
  // Whether warm() was called (its min_containers are kept from then on).
  bool warmed();
  // Stops containers idle for longer than scaledown_window, keeping
  // min_containers (and the buffer, under load); starts buffer containers
  // that are missing.
  void scale_down();
  // New scaling settings (update_autoscaler): with `keep_warm` (a `thaw
  // serve` that keeps warm containers) more min_containers start now, in
  // the background; fewer, a lower max or a shorter window take effect as
  // containers go idle.
  void set_limits(const ScaleLimits& limits, bool keep_warm);
  ScaleLimits limits();
  // Stops the idle containers (of a version no longer deployed).
  void stop_idle();
  // Stops every container; no call may be in flight.
  void shutdown();
  size_t size();
  PoolStats stats();

 private:
  struct Slot {
    std::unique_ptr<Worker> worker;
    int in_flight = 0;
    int served = 0;       // inputs given to it, for max_inputs (single_use_containers)
    bool used_up = false;  // served its max_inputs (or stop_fetching): stopped, gracefully, once idle
    bool stop_fetching = false;  // its code called thaw.experimental.stop_fetching_inputs()
    bool broken = false;  // takes no more calls; removed when its last one ends
    std::chrono::steady_clock::time_point idle_since = std::chrono::steady_clock::now();
  };
  using SlotIt = std::list<Slot>::iterator;

  nlohmann::json call_once(const nlohmann::json& request, bool use_snapshot, const YieldSink& on_yield,
                           const CancelCheck& cancelled);
  // Throws CallCancelled when `cancelled` says so while it waits.
  SlotIt acquire(bool use_snapshot, const CancelCheck& cancelled = {});
  SlotIt start_slot(std::unique_lock<std::mutex>& lock, bool use_snapshot, int in_flight);
  // stop_fetching: the worker's answer said it takes no more inputs.
  void release(SlotIt it, bool healthy, bool stop_fetching = false);
  void stop_idle_for(std::chrono::duration<double> window, bool keep_warm);
  int capacity() const;
  // Whether the slot may take another input (it has room, and inputs left
  // under max_inputs).
  bool takes_input(const Slot& s) const;
  // Under load, the containers to keep: the busy ones (and those starting
  // for a call) plus buffer_containers; 0 without load or autoscaling.
  int buffered_target_locked() const;
  // Starts buffer containers in the background up to buffered_target_locked().
  void keep_buffer_locked();
  // After warm(): starts containers in the background up to min_containers
  // again (single-use containers stop after each input).
  void keep_min_locked();
  // min_containers, within max_containers.
  int min_kept_locked() const;
  void start_buffer_container(bool buffer);

  Snapshots& snapshots_;
  Target target_;
  const bool autoscale_;
  std::mutex mu_;
  ScaleLimits limits_;  // under mu_
  std::atomic<int64_t> used_noted_ms_{-1000000};  // when this handle's snapshot was last marked used
  std::condition_variable cv_;
  std::list<Slot> slots_;
  int starting_ = 0;         // containers being started, for calls or as buffer
  int buffer_starting_ = 0;  // of which buffer containers
  int waiting_for_start_ = 0;  // calls waiting for room in a container being started
  int queued_ = 0;  // calls in acquire(): not yet given a container (the backlog)
  bool stopping_ = false;
  bool warmed_ = false;  // warm() ran: min_containers are kept
  ThreadSet buffer_starters_;
  ThreadSet stoppers_;  // containers done with their max_inputs, stopping
  // serialized=True: its pickle is kept while the pool may start containers
  // that load it (runtime/serialized_files.h).
  UniqueFd serialized_hold_;
};

}  // namespace thaw::runtime
