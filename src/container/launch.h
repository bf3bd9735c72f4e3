// Starting and stopping containers, cold or from an engine image. A
// Container owns everything of one: its root process (our child), the
// runtime's end of the control channel, its log pump and its cgroup.
#pragma once
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/unique_fd.h"
#include "container/cgroup.h"
#include "container/live.h"
#include "container/log_pump.h"
#include "container/restore_shell.h"
#include "container/spawn.h"
#include "container/spec.h"

namespace thaw::container {

struct LaunchOptions {
  std::string thaw_exe;    // the thaw binary, for `thaw __init`
  int log_fd = 2;          // where the container's output goes
  std::string app_log;     // a file it is appended to as well ("" for none)
  uint64_t memory_limit_bytes = 0;
  double cpu_limit = 0;  // cores
  int restore_timeout_ms = 120000;
  LiveContainers* live = nullptr;  // told of the container while it runs (may be null)
};

class Container {
 public:
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  const std::string& id() const { return id_; }
  int control_fd() const { return control_.get(); }
  // The worker's pid as the host sees it (found lazily for cold starts).
  pid_t worker_pid();
  // Processes in the container beside the worker and its descendants:
  // orphans its init adopted (a daemon the function started), host pids.
  std::vector<pid_t> other_processes();
  bool restored() const { return restored_; }
  // The engine's timings for a restore (ready_ms, memory_ms, ...), to which
  // the runtime adds its own.
  const nlohmann::json& restore_report() const { return report_; }
  nlohmann::json& restore_report() { return report_; }
  // Waits up to grace_ms for the container to end by itself, then kills it.
  // Returns the worker's exit status (or -1 if unknown).
  int stop(int grace_ms);
  // Why the container ended, for the caller: its exit status (128+signal
  // when killed), or that it ran out of memory.
  std::string end_reason(int status) const;
  // Limits its function asked for that are not in force (Cgroup::warnings).
  const std::vector<std::string>& cgroup_warnings() const { return cgroup_.warnings(); }
  // Gives up the control channel (the worker sees EOF) without waiting.
  void close_control() { control_.reset(); }

 private:
  friend std::unique_ptr<Container> start_cold(const Spec&, const LaunchOptions&);
  friend std::unique_ptr<Container> start_restored(const Spec&, const LaunchOptions&, RestoreShell&);
  Container(std::string id, const LaunchOptions& o)
      : id_(std::move(id)), log_(o.log_fd, o.app_log), live_(o.live) {}
  void note_live(LiveContainer c) {
    if (live_) live_->note(this, std::move(c));
  }
  void note_gone() {
    if (live_) live_->gone(this);
  }

  std::string id_;
  LogPump log_;
  Cgroup cgroup_;
  Child root_;          // thaw __init (cold: pid 1 itself) or a restore forked by a RestoreShell
  pid_t ns_init_ = 0;   // pid 1 of the container, as the host sees it
  pid_t worker_ = 0;
  bool restored_ = false;
  nlohmann::json report_ = nlohmann::json::object();
  UniqueFd control_;
  LiveContainers* live_;
};

// Starts a container whose pid 1 is thaw's init and whose pid 2 runs
// spec.argv. Returns once it is started; the worker reports on the control
// channel.
std::unique_ptr<Container> start_cold(const Spec& spec, const LaunchOptions& o);

// Restores a container from the shell's image. Returns once the worker runs
// again; throws with the engine's reason if it cannot.
std::unique_ptr<Container> start_restored(const Spec& spec, const LaunchOptions& o, RestoreShell& shell);

// A fresh container id (12 hex digits).
std::string new_container_id();

}  // namespace thaw::container
