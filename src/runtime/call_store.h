// Spawned calls by id (`fc-…`), so that any process can read a result:
// `FunctionCall.from_id(id).get()`. Each call is a file in
// $THAW_HOME/function-calls/, written atomically: "running" when spawned,
// then "done" with its result message. Results are kept for a week.
//
// Several runtimes may share one store. A waiter in the runtime running the
// call is woken when it finishes; a waiter elsewhere reads the file again
// every 50 ms while the running runtime is alive, which it tells by that
// runtime's owner lock (an flock held for the CallStore's lifetime): a call
// whose runtime stopped before it finished is reported lost, not waited for.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/store.h"

namespace thaw::runtime {

class CallStore {
 public:
  static constexpr std::chrono::hours kKeepResults{24 * 7};

  explicit CallStore(const std::string& home);
  ~CallStore();
  CallStore(const CallStore&) = delete;
  CallStore& operator=(const CallStore&) = delete;

  // A new id for a call about to run (label: "app.function", for messages).
  std::string begin(const std::string& label);
  // The call's result message; wakes its waiters.
  void finish(const std::string& id, const nlohmann::json& result);
  // The result message of call id, waiting at most timeout_s (nullopt:
  // without limit). Otherwise {"type":"timeout"} or {"type":"error"} saying
  // why there is none (unknown id, expired, lost with its runtime).
  // `abandoned` is asked every 50-100 ms while it waits: true (the asker
  // has gone, the server stops) ends the wait with {"type":"timeout"}.
  nlohmann::json wait(const std::string& id, std::optional<double> timeout_s,
                      const std::function<bool()>& abandoned = {});
  // Asks that call id stop (FunctionCall.cancel()), from any runtime: the
  // one running it learns through cancel_check. {"type":"cancelling"},
  // {"type":"done"} when it has finished already, or an error.
  nlohmann::json cancel(const std::string& id);
  // For the call begun here as id: true once it was cancelled.
  std::function<bool()> cancel_check(const std::string& id);
  // Removes results older than kKeepResults and the lock files of runtimes
  // that have stopped.
  void sweep();

  static bool valid_id(const std::string& id);

 private:
  struct Running {
    bool done = false;
    nlohmann::json result;
    std::atomic<bool> cancelled{false};
  };
  std::string path_of(const std::string& id) const { return dir_ + "/" + id + ".json"; }
  // Written by cancel() for a call another runtime runs.
  std::string cancel_path_of(const std::string& id) const { return dir_ + "/" + id + ".cancel"; }
  std::optional<nlohmann::json> read_record(const std::string& id) const;
  bool owner_alive(const std::string& owner) const;

  std::string dir_;
  std::string owner_;             // this runtime's id in the records
  std::optional<FileLock> owner_lock_;  // held while this runtime lives
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Running>> running_;  // this runtime's, until done
  // Results whose file could not be written (a full disk): kept here, so
  // that this runtime still answers for them.
  std::map<std::string, nlohmann::json> unwritten_;
};

}  // namespace thaw::runtime
