// The containers of one target. A call goes to a container with room for
// it (one input at a time, or max_concurrent_inputs with @concurrent), or to
// a new one while there are fewer than max_containers; concurrent calls
// therefore get containers of their own. Idle containers beyond
// min_containers are stopped after scaledown_window.
#pragma once
#include <chrono>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

#include "runtime/snapshots.h"
#include "runtime/target.h"
#include "runtime/worker.h"

namespace thaw::runtime {

class Pool {
 public:
  Pool(Snapshots& snapshots, Target target) : snapshots_(snapshots), target_(std::move(target)) {}
  ~Pool() { shutdown(); }

  const Target& target() const { return target_; }

  // Runs one call; returns a result message (ok or not). Never throws.
  nlohmann::json call(const nlohmann::json& request, bool use_snapshot = true);
  // Starts containers until min_containers are up (serve).
  void warm();
  // Stops containers idle for longer than scaledown_window, keeping min_containers.
  void scale_down();
  // Stops the idle containers (of a version no longer deployed).
  void stop_idle();
  // Stops every container; no call may be in flight.
  void shutdown();
  size_t size();

 private:
  struct Slot {
    std::unique_ptr<Worker> worker;
    int in_flight = 0;
    bool broken = false;  // takes no more calls; removed when its last one ends
    std::chrono::steady_clock::time_point idle_since = std::chrono::steady_clock::now();
  };
  using SlotIt = std::list<Slot>::iterator;

  SlotIt acquire(bool use_snapshot);
  SlotIt start_slot(std::unique_lock<std::mutex>& lock, bool use_snapshot, int in_flight);
  void release(SlotIt it, bool healthy);
  void stop_idle_for(std::chrono::duration<double> window, int keep);
  int capacity() const;

  Snapshots& snapshots_;
  Target target_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Slot> slots_;
  int starting_ = 0;
};

}  // namespace thaw::runtime
