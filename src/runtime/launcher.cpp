#include "runtime/launcher.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "common/error.h"
#include "common/timing.h"
#include "container/dev_shm_files.h"
#include "container/fsutil.h"
#include "runtime/local_mounts.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

// GPUs this machine has (/dev/nvidia0, /dev/nvidia1, ...), as
// CUDA_VISIBLE_DEVICES would list them.
std::string all_gpus() {
  std::string out;
  for (const auto& n : container::list_dir("/dev")) {
    if (n.rfind("nvidia", 0) != 0 || n.size() == 6) continue;
    std::string num = n.substr(6);
    if (num.find_first_not_of("0123456789") != std::string::npos) continue;
    out += (out.empty() ? "" : ",") + num;
  }
  return out;
}

}  // namespace

container::Spec Launcher::spec(const Target& t, bool snapshot) {
  container::Spec s;
  s.id = container::new_container_id();
  const json read_only = t.fn.config.value("read_only_volumes", json::array());
  for (const auto& [path, volume] : t.fn.volumes) {
    bool ro = read_only.is_array() && std::find(read_only.begin(), read_only.end(), path) != read_only.end();
    s.mounts.push_back({ctx_.store.volume_dir(volume), path, ro});
  }
  s.argv = {ctx_.python, "-m", "thaw._worker"};
  s.cwd = t.cwd;
  auto parent = [](const std::string& p) { return p.substr(0, p.rfind('/')); };
  s.host_paths = {ctx_.store.home(), ctx_.python_dir, parent(ctx_.thaw_exe), t.cwd};
  if (!ctx_.socket_path.empty()) s.host_paths.push_back(parent(ctx_.socket_path));
  // After the volumes: a local file may go inside a Volume's path.
  for (auto& m : local_mounts(t.fn, s.host_paths)) s.mounts.push_back(std::move(m));
  const char* home = std::getenv("HOME");
  s.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           std::string("HOME=") + (home && *home ? home : "/root"),
           "LANG=C.UTF-8",
           "PYTHONPATH=" + ctx_.python_dir,
           "PYTHONUNBUFFERED=1",
           "THAW_CONTROL_FD=3",
           "THAW_APP=" + t.app,
           "THAW_APP_FILE=" + t.app_file,
           "THAW_FUNCTION=" + t.fn.name,
           "THAW_CONTAINER_ID=" + s.id,
           "THAW_BIN=" + ctx_.thaw_exe,
           "THAW_HOME=" + ctx_.store.home()};
  if (snapshot) s.env.push_back("THAW_SNAPSHOT=1");
  if (!t.fn.serialized_file.empty()) s.env.push_back("THAW_SERIALIZED_FUNCTION=" + t.fn.serialized_file);
  if (!ctx_.socket_path.empty()) s.env.push_back("THAW_RUNTIME_SOCKET=" + ctx_.socket_path);
  // Calls made from inside an ephemeral app's container go to that app too.
  if (!t.version) s.env.push_back("THAW_APP_MODE=ephemeral");
  // Its temporary files (tempfile, multiprocessing's listeners) its own, in
  // its own /dev/shm, and in its snapshot (dev_shm_files.h); an image's
  // TMPDIR still wins.
  if (container::is_dir("/dev/shm")) s.env.push_back(std::string("TMPDIR=") + container::kContainerTmp);
  for (const auto& [k, v] : t.fn.env) container::set_env(s.env, k, v);
  // Without GPU snapshots the GPU stays hidden until after the restore
  // (start.env brings the real value): CUDA state made in the snapshot phase
  // could not be captured. With them, the snapshot phase has the GPU and the
  // checkpoint goes through the driver (engine/resources/gpu.cpp).
  bool gpu_in_snapshot = snapshot && gpu_snapshot(t);
  if (!t.fn.gpu().empty())
    container::set_env(s.env, "CUDA_VISIBLE_DEVICES", snapshot && !gpu_in_snapshot ? "" : all_gpus());
  if (gpu_in_snapshot) s.env.push_back("THAW_GPU_SNAPSHOT=1");
  return s;
}

container::LaunchOptions Launcher::options(const Target& t) const {
  container::LaunchOptions o;
  o.thaw_exe = ctx_.thaw_exe;
  o.log_fd = ctx_.log.fd();
  // A deployed app's output is kept for `thaw app logs` (an ephemeral
  // one's, `thaw run`, goes to its terminal only).
  if (t.version) o.app_log = app_log_path(ctx_.store, t.app);
  o.memory_limit_bytes = t.fn.memory_limit_bytes();
  o.cpu_limit = t.fn.cpu_limit();
  o.live = ctx_.live.get();
  return o;
}

void Launcher::warn_limits(const Target& t, const container::Container& c) {
  for (const auto& w : c.cgroup_warnings()) {
    {
      std::lock_guard<std::mutex> lock(warned_mu_);
      if (!warned_.insert(t.label() + "\n" + w).second) continue;
    }
    ctx_.log.line("Warning: " + t.label() + ": " + w + ".");
  }
}

bool Launcher::gpu_snapshot(const Target& t) { return t.fn.gpu_snapshot() && !t.fn.gpu().empty() && !all_gpus().empty(); }

bool Launcher::gpu_visible(const Target& t) const { return !t.fn.gpu().empty() && !all_gpus().empty(); }

json Launcher::start_env(const Target& t, const std::string& container_id) const {
  json env = json::object();
  for (const auto& [k, v] : t.fn.env) env[k] = v;
  env["THAW_CONTAINER_ID"] = container_id;
  if (!ctx_.socket_path.empty()) env["THAW_RUNTIME_SOCKET"] = ctx_.socket_path;
  if (!t.fn.gpu().empty()) env["CUDA_VISIBLE_DEVICES"] = all_gpus();
  // Cls.with_options & co; null unsets it in a container restored from a
  // snapshot another handle's container made.
  env["THAW_CONFIG_OVERRIDES"] = t.config_overrides.empty() ? json() : json(t.config_overrides.dump());
  return env;
}

Launcher::Starting::Starting(Launcher& l, Worker& w) : l_(l), w_(w) {
  std::lock_guard<std::mutex> lock(l_.starting_mu_);
  l_.starting_.insert(&w_);
  if (l_.aborted_) w_.abort();  // aborted since refuse_if_aborted() looked
}

Launcher::Starting::~Starting() {
  std::lock_guard<std::mutex> lock(l_.starting_mu_);
  l_.starting_.erase(&w_);
}

void Launcher::abort_starts() {
  std::lock_guard<std::mutex> lock(starting_mu_);
  aborted_ = true;
  for (Worker* w : starting_) w->abort();
}

bool Launcher::aborted() {
  std::lock_guard<std::mutex> lock(starting_mu_);
  return aborted_;
}

void Launcher::refuse_if_aborted() {
  if (aborted()) throw CallCancelled("the runtime is stopping: no container is started any more");
}

std::unique_ptr<Worker> Launcher::cold(const Target& t) {
  refuse_if_aborted();
  auto s = spec(t, false);
  auto w = std::make_unique<Worker>(container::start_cold(s, options(t)), t.label());
  Starting starting(*this, *w);
  warn_limits(t, w->container());
  w->start(start_env(t, s.id), false, fresh_seed(), gpu_visible(t), t.fn.startup_timeout_s());
  return w;
}

std::unique_ptr<Worker> Launcher::for_snapshot(const Target& t) {
  refuse_if_aborted();
  auto w = std::make_unique<Worker>(container::start_cold(spec(t, true), options(t)), t.label());
  Starting starting(*this, *w);
  warn_limits(t, w->container());
  json ready = w->expect("snapshot_ready", t.fn.startup_timeout_s());
  for (const auto& warning : ready.value("warnings", json::array()))
    ctx_.log.line("Warning: " + (warning.is_string() ? warning.get<std::string>() : warning.dump()));
  return w;
}

std::unique_ptr<Worker> Launcher::restored(const Target& t, const std::string& image) {
  using Clock = std::chrono::steady_clock;
  refuse_if_aborted();
  auto s = spec(t, false);
  auto t0 = Clock::now();
  auto shell = shells_.get(image);
  double shell_ms = ms_since(t0);
  auto t1 = Clock::now();
  std::unique_ptr<container::Container> c;
  try {
    c = container::start_restored(s, options(t), *shell);
  } catch (const container::RestoreShellGone&) {
    // Ended since we last used it (killed, say): one new shell, once.
    shells_.forget(image);
    t0 = Clock::now();
    shell = shells_.get(image);
    shell_ms += ms_since(t0);
    t1 = Clock::now();
    c = container::start_restored(s, options(t), *shell);
  }
  double container_ms = ms_since(t1);
  auto w = std::make_unique<Worker>(std::move(c), t.label());
  Starting starting(*this, *w);
  warn_limits(t, w->container());
  auto t2 = Clock::now();
  json ready = w->start(start_env(t, s.id), true, fresh_seed(), gpu_visible(t), t.fn.startup_timeout_s());
  // Where a restore's time went, for the log (Snapshots::restore).
  json& r = w->container().restore_report();
  r["shell_ms"] = shell_ms;
  r["container_ms"] = container_ms;
  r["start_ms"] = ms_since(t2);
  r["enter_ms"] = ready.value("timings", json::object()).value("enter_s", 0.0) * 1000;
  return w;
}

}  // namespace thaw::runtime
