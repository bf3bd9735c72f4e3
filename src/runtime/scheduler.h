// Runs deployed functions that have a schedule= (Modal's Period and Cron)
// while `thaw serve` runs: every second it reads which versions are
// deployed, and starts a call of each function whose time has come. A run
// still going when the next is due makes that one skip (logged), so runs
// of one function never pile up. A redeploy starts the schedule afresh.
#pragma once
#include <condition_variable>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "runtime/runtime.h"
#include "runtime/schedule.h"
#include "runtime/store.h"
#include "runtime/thread_set.h"

namespace thaw::runtime {

class Scheduler {
 public:
  explicit Scheduler(Runtime& rt);
  // Stops scheduling and waits for the runs in flight.
  ~Scheduler();
  // Starts no more runs (the ones in flight go on).
  void stop();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

 private:
  struct Entry {
    std::string app, function;
    Schedule schedule;
    std::time_t next = 0;
    bool running = false;
  };
  void loop();
  void tick(std::time_t now);
  void run(const std::string& id);

  Runtime& rt_;
  // One `thaw serve` per store runs the schedules: the one holding this
  // lock (another takes over when it ends).
  std::optional<FileLock> lock_;
  bool told_waiting_ = false;
  std::mutex mu_;  // everything below
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, Entry> entries_;  // by app@vN/function
  std::map<std::string, std::string> refused_;  // schedules that did not parse, logged once
  uint64_t runs_started_ = 0;
  ThreadSet runs_;
  std::thread thread_;
};

}  // namespace thaw::runtime
