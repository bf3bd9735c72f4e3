// Starting the containers of a target: cold (the worker runs the global
// scope and every @enter), for a snapshot (THAW_SNAPSHOT=1: it stops at
// snapshot_ready), or restored from a snapshot's image. Each returns a
// Worker that is ready for calls, except start_for_snapshot's.
#pragma once
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "runtime/context.h"
#include "runtime/restore_shells.h"
#include "runtime/target.h"
#include "runtime/worker.h"

namespace thaw::runtime {

class Launcher {
 public:
  explicit Launcher(Context& ctx) : ctx_(ctx), shells_(ctx) {}

  std::unique_ptr<Worker> cold(const Target& t);
  // The worker has sent snapshot_ready (its warnings are logged).
  std::unique_ptr<Worker> for_snapshot(const Target& t);
  // Throws with the reason when the image cannot be restored or the
  // restored worker does not come up.
  std::unique_ptr<Worker> restored(const Target& t, const std::string& image);

  // Restores go through one restore shell per image (restore_shells.h).
  RestoreShells& shells() { return shells_; }

  // The runtime is being interrupted (Ctrl-C on `thaw run`/`thaw call`):
  // containers being started are stopped (their start throws) and new
  // starts throw CallCancelled. For good: the runtime is about to end.
  void abort_starts();
  bool aborted();
  // Throws CallCancelled once abort_starts() was called.
  void refuse_if_aborted();

 private:
  // A worker being started, which abort_starts() may stop meanwhile.
  class Starting {
   public:
    Starting(Launcher& l, Worker& w);
    ~Starting();
    Starting(const Starting&) = delete;
    Starting& operator=(const Starting&) = delete;

   private:
    Launcher& l_;
    Worker& w_;
  };

  container::Spec spec(const Target& t, bool snapshot);
  container::LaunchOptions options(const Target& t) const;
  nlohmann::json start_env(const Target& t, const std::string& container_id) const;
  bool gpu_visible(const Target& t) const;
  // enable_gpu_snapshot is set and this machine has a GPU to give it.
  static bool gpu_snapshot(const Target& t);
  // Logs, once per function and runtime, the limits its containers asked
  // for and do not get (memory=, cpu= on a host without those cgroups).
  void warn_limits(const Target& t, const container::Container& c);

  Context& ctx_;
  RestoreShells shells_;
  std::mutex warned_mu_;
  std::set<std::string> warned_;
  std::mutex starting_mu_;
  std::set<Worker*> starting_;  // under starting_mu_
  bool aborted_ = false;        // under starting_mu_
};

}  // namespace thaw::runtime
