#include "runtime/snapshots.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <thread>

#include "container/dev_shm_files.h"
#include "container/fsutil.h"
#include "container/init.h"
#include "engine/engine.h"
#include "proc/procfs.h"
#include "runtime/disk_full.h"

namespace thaw::runtime {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// After it was recreated, a snapshot that fails this many more times in a
// row is left alone until the next deploy: each try costs a restore.
constexpr int kFailuresBeforeGivingUp = 3;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  return buf;
}

// How long after a snapshot failed for a full disk cold starts try again
// (THAW_SNAPSHOT_RETRY_SECONDS; 60 by default).
int64_t snapshot_retry_seconds_from_env() {
  const char* v = std::getenv("THAW_SNAPSHOT_RETRY_SECONDS");
  if (!v || !*v) return 60;
  char* end = nullptr;
  long long n = std::strtoll(v, &end, 10);
  if (*end != '\0' || n < 0 || n > 86400 * 365)
    fail("THAW_SNAPSHOT_RETRY_SECONDS=", v, ": give a whole number of seconds, from 0 to 31536000");
  return n;
}

// How often a checkpoint refused for a passing state is taken (engine.h).
constexpr int kCheckpointAttempts = 6;

// A restore the engine refused because a socket of the snapshot could not
// bind its address again: another process holds it now — on this host's
// network, most often another container restored from this very snapshot
// (a server the snapshot phase started, on a port the kernel chose). The
// image is not at fault and a recreated one would hold an address too:
// blaming it would recreate it and, after a few concurrent starts, give it
// up for every container. Such a restore only costs this container a cold
// start.
bool address_taken(const std::string& reason) {
  return reason.find(std::strerror(EADDRINUSE)) != std::string::npos;
}

// Removes what a snapshot's creation made on its way, unless it was
// installed (images may be GBs).
struct RemoveFresh {
  std::string path;
  bool installed = false;
  ~RemoveFresh() {
    if (installed) return;
    try {
      container::remove_tree(path);
    } catch (const std::exception&) {
      // The next creation removes leftovers (image.new*) first.
    }
  }
};

}  // namespace

bool Snapshots::complete(const std::string& key, const json& meta) const {
  // An image without its record (one made before the record went first,
  // cut short by a crash; or a meta.json lost) is made again rather than
  // restored unchecked.
  return ctx_.store.has_image(key) && meta.is_object() && meta.contains("generation");
}

void Snapshots::create_locked(const Target& t, json& meta) {
  auto t0 = Clock::now();
  ctx_.log.line("Creating memory snapshot for Function. (" + t.label() + ")");
  auto w = launcher_.for_snapshot(t);
  double init_s = since(t0);
  pid_t pid = w->container().worker_pid();
  if (pid <= 0) fail("the snapshot container has no worker process");
  // The image holds the worker and its descendants; a process its init
  // adopted (a daemon that left its parent) is not among them.
  for (pid_t other : w->container().other_processes())
    ctx_.log.line(cat("Snapshot note: process ", other, proc::command_line(other),
                      " runs in the container apart from the function's processes (a daemon it started?); the "
                      "snapshot does not hold it, and restored containers run without it"));
  std::string dir = ctx_.store.snapshot_dir(t.key);
  container::mkdir_p(dir);
  // Leftovers of a creator that died (we hold the lock: none is running).
  for (const auto& name : container::list_dir(dir))
    if (name.rfind("image.new", 0) == 0 || name.rfind("image.old", 0) == 0) container::remove_tree(dir + "/" + name);
  std::string fresh = dir + "/image.new";
  auto t1 = Clock::now();
  engine::CheckpointStats st;
  engine::CheckpointOptions co{pid, fresh, true};
  // As Modal's snapshots do: connections opened in the snapshot phase
  // come back dropped, and clients reconnect. The same for pipes and unix
  // sockets to processes outside the container, except the container's
  // own fds, which every restored container is given anew.
  co.tcp_close = true;
  co.drop_outside = true;
  co.keep_outside = {0, 1, 2, container::kControlFd};
  // The container's own /dev/shm, its temporary directory there, as the
  // held worker left it: each restored container starts with a copy.
  std::string dev_shm = fresh + "." + container::kImageDevShm;
  container::SavedFiles shm_files;
  RemoveFresh dev_shm_guard{dev_shm};
  RemoveFresh inodes_guard{container::saved_inodes_path(dev_shm)};
  co.while_held = [&] {
    container::remove_tree(dev_shm);  // an earlier attempt's
    shm_files = container::save_dev_shm_files(pid, dev_shm);
  };
  // A refusal of a state that passes by itself (engine.h: a connection
  // handing over an fd, a child between vfork and exec) is tried again a
  // little later each time, about 3 s in all: a refused checkpoint leaves
  // the worker running as it was.
  for (int attempt = 1;; attempt++) {
    try {
      st = engine::checkpoint(co);
      break;
    } catch (const std::exception& e) {
      if (engine::passing_state(e.what()) && attempt < kCheckpointAttempts) {
        int wait_ms = 100 << (attempt - 1);
        ctx_.log.line(cat("Snapshot note: the checkpoint was refused for ", engine::kPassingState, " (", e.what(),
                          "); trying again in ", wait_ms, " ms (attempt ", attempt + 1, " of ", kCheckpointAttempts,
                          ")"));
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        continue;
      }
      // Recorded as the reason its version cold-starts: say what fixes it.
      if (is_disk_full(e.what())) throw CheckpointRefused(cat(e.what(), "; ", disk_full_advice(ctx_.store.home())));
      throw CheckpointRefused(e.what());
    }
  }
  for (const auto& n : st.notes) ctx_.log.line("Snapshot note: " + n);
  for (const auto& n : shm_files.left_out) ctx_.log.line("Snapshot note: not kept with the snapshot: " + n);
  double ckpt_s = since(t1);
  w.reset();  // the worker was killed with the checkpoint; its container ends
  std::string image = ctx_.store.snapshot_image(t.key);
  // Whatever fails from here leaves no new image behind (it may be GBs).
  RemoveFresh guard{fresh};
  std::string image_dev_shm = cat(fresh, "/", container::kImageDevShm);
  if (::rename(dev_shm.c_str(), image_dev_shm.c_str()) != 0)
    fail_errno("move the files of the container's /dev/shm into ", fresh);
  dev_shm_guard.installed = true;
  if (::rename(inodes_guard.path.c_str(), container::saved_inodes_path(image_dev_shm).c_str()) != 0)
    fail_errno("move the inode numbers of the files of the container's /dev/shm into ", fresh);
  inodes_guard.installed = true;

  // The old image goes aside first, then the record is written, then the
  // new image takes the final name: an image under its final name always
  // has its own record. (A crash after the record leaves a record without
  // an image, made again at the next start; with the old image still there
  // it would be restored under the new record, its failures forgotten; with
  // the image first it would be restored without its CPU check.)
  // Restores may be reading the old image: they hold its files open, so it
  // can be renamed away and removed under them.
  std::string old = cat(dir, "/image.old.", ::getpid(), ".", ::gettid());
  if (container::exists(image) && ::rename(image.c_str(), old.c_str()) != 0) fail_errno("retire ", image);
  std::vector<std::string> flags(ctx_.fingerprint.cpu_flags.begin(), ctx_.fingerprint.cpu_flags.end());
  meta["key"] = t.key;
  meta["app"] = t.app;
  meta["version"] = t.version;
  meta["function"] = t.fn.name;
  meta["handle"] = t.own_snapshot;  // a with_options handle's (evicted first)
  meta["created"] = utc_now_iso();
  meta["generation"] = meta.value("generation", 0) + 1;
  meta["machine"] = ctx_.fingerprint.key_part();
  meta["cpu_flags"] = flags;
  meta["image_bytes"] = container::tree_bytes(fresh);
  meta["memory_bytes"] = st.pages_bytes;
  meta["gpu_bytes"] = st.gpu_bytes;  // device memory held in the image (GPU snapshots)
  meta["processes"] = st.processes;  // the worker and its child processes
  meta["dev_shm_files"] = shm_files.files;  // of its /dev/shm, its temporary directory (dev_shm_files.h)
  meta["dev_shm_bytes"] = shm_files.bytes;
  meta["notes"] = st.notes;          // what the image leaves out by design (thaw snapshot inspect)
  meta["gpu_uuids"] = ctx_.fingerprint.gpu_uuids;
  meta["create_seconds"] = since(t0);
  meta["failures_since_created"] = 0;
  if (!meta.contains("failures")) meta["failures"] = 0;
  if (!meta.contains("recreated")) meta["recreated"] = false;
  meta.erase("create_failed");
  try {
    ctx_.store.write_meta(t.key, meta);
  } catch (const std::exception& e) {
    // As a full disk during the checkpoint: the version cold-starts, saying why.
    if (is_disk_full(e.what())) throw CheckpointRefused(cat(e.what(), "; ", disk_full_advice(ctx_.store.home())));
    throw;
  }
  if (::rename(fresh.c_str(), image.c_str()) != 0) fail_errno("install ", image);
  guard.installed = true;
  container::remove_tree(old);
  // The shell that read the old image must not restore it any more (other
  // runtimes notice the new image by themselves: restore_shells.h).
  launcher_.shells().forget(image);
  ctx_.log.line("Memory snapshot created in " + format_duration(since(t0)) + ".");
  ctx_.log.line("  (global scope and @enter(snap=True) " + format_duration(init_s) + ", checkpoint " +
                format_duration(ckpt_s) + "; " + mib(st.pages_bytes) + " of memory, " +
                (st.processes > 1 ? std::to_string(st.processes) + " processes, " : std::string()) +
                std::to_string(st.threads) + " threads; " +
                (shm_files.files ? cat(shm_files.files, " files of its /dev/shm, ", mib(shm_files.bytes), "; ")
                                 : std::string()) +
                "key " + t.key.substr(0, 12) + ")");
}

bool Snapshots::ensure(const Target& t, bool for_deploy) {
  auto lock = ctx_.store.lock_snapshot(t.key);
  json meta = ctx_.store.read_meta(t.key).value_or(json::object());
  bool created = false;
  if (!complete(t.key, meta)) {
    // Read here, not at start: a bad value must not stop other commands.
    int max_handles = t.own_snapshot ? max_handle_snapshots_from_env() : 0;
    try {
      create_locked(t, meta);
    } catch (const CheckpointRefused& e) {
      meta["create_failed"] = {{"version", t.version}, {"reason", e.what()}};
      // A full disk passes: cold starts try again now and then
      // (start_worker) instead of waiting for the next deploy.
      if (is_disk_full(e.what())) meta["create_failed"]["disk_full_at"] = ::time(nullptr);
      // Whose it is, for `thaw app stop` and the handles' cap to find it.
      meta["app"] = t.app;
      meta["function"] = t.fn.name;
      meta["handle"] = t.own_snapshot;
      ctx_.store.write_meta(t.key, meta);
      if (t.own_snapshot) {
        try {
          for (const auto& image : make_room_for_handle_snapshot(ctx_.store, t, max_handles, ctx_.log))
            launcher_.shells().forget(image);
        } catch (const std::exception& room) {
          ctx_.log.line(cat("Warning: could not make room among the handle snapshots of ", t.label(), ": ",
                            room.what()));
        }
      }
      throw;
    }
    created = true;
    if (t.own_snapshot) {
      mark_handle_snapshot_made(ctx_.store, t.key);
      for (const auto& image : make_room_for_handle_snapshot(ctx_.store, t, max_handles, ctx_.log))
        launcher_.shells().forget(image);
    }
  } else if (for_deploy) {
    ctx_.log.line("Memory snapshot for Function is up to date. (" + t.label() + ", key " + t.key.substr(0, 12) + ")");
  }
  if (!for_deploy) return created;
  // A deploy owns the snapshot from now on, and may recreate it once.
  meta["app"] = t.app;
  meta["version"] = t.version;
  meta["function"] = t.fn.name;
  meta["recreated"] = false;
  ctx_.store.write_meta(t.key, meta);
  return created;
}

std::unique_ptr<Worker> Snapshots::cold_start(const Target& t) {
  auto t0 = Clock::now();
  ctx_.log.line("Cold-starting container for Function. (" + t.label() + ")");
  auto w = launcher_.cold(t);
  ctx_.log.line("Container ready in " + format_duration(since(t0)) + ".");
  ctx_.log.line("  (container " + w->container().id() + ")");
  return w;
}

std::unique_ptr<Worker> Snapshots::restore(const Target& t, const json& meta) {
  auto missing = missing_cpu_flags(ctx_.fingerprint, meta.value("cpu_flags", std::vector<std::string>{}));
  if (!missing.empty()) {
    std::string list;
    for (const auto& f : missing) list += (list.empty() ? "" : ", ") + f;
    fail("this CPU lacks features the snapshot was taken with (", list, ")");
  }
  auto t0 = Clock::now();
  ctx_.log.line("Restoring Function from memory snapshot. (" + t.label() + ")");
  auto w = launcher_.restored(t, ctx_.store.snapshot_image(t.key));
  double total = since(t0);
  const json& r = w->container().restore_report();
  auto ms = [&](const char* k) { return format_duration(r.value(k, 0.0) / 1000); };
  ctx_.log.line("Restored in " + format_duration(total) + ".");
  std::string engine = r.value("template", false)
                           ? " of which a copy of the live template " + ms("ready_ms") + " (its fork " + ms("fork_ms") + ")"
                           : " of which engine " + ms("ready_ms") + ": checks " + ms("load_ms") + ", process " +
                                 ms("setup_ms") + ", memory " + ms("memory_ms") + ", threads " + ms("threads_ms") +
                                 ", registers " + ms("finish_ms");
  ctx_.log.line("  (container " + w->container().id() + "; restore shell " + ms("shell_ms") + ", container " +
                ms("container_ms") + engine + "; start " + ms("start_ms") + " of which @enter(snap=False) " +
                ms("enter_ms") + ")");
  return w;
}

void Snapshots::note_success(const Target& t) {
  // Failures count while they come one after another: a restore that works
  // again ends the series.
  auto lock = ctx_.store.lock_snapshot(t.key);
  json meta = ctx_.store.read_meta(t.key).value_or(json::object());
  meta["failures_since_created"] = 0;
  ctx_.store.write_meta(t.key, meta);
}

bool Snapshots::on_restore_failure(const Target& t, uint64_t generation, const std::string& reason, bool retry) {
  if (retry) ctx_.log.line("Restore from memory snapshot failed: " + reason + "; cold-starting the container.");
  auto lock = ctx_.store.lock_snapshot(t.key);
  json meta = ctx_.store.read_meta(t.key).value_or(json::object());
  // Someone recreated it while we tried the old one: try the new one.
  if (meta.value("generation", uint64_t{0}) != generation && ctx_.store.has_image(t.key)) return true;
  meta["failures"] = meta.value("failures", 0) + 1;
  meta["failures_since_created"] = meta.value("failures_since_created", 0) + 1;
  meta["last_failure"] = {{"when", utc_now_iso()}, {"reason", reason}};
  if (meta.value("recreated", false)) {
    ctx_.store.write_meta(t.key, meta);
    return false;
  }
  meta["recreated"] = true;
  ctx_.store.write_meta(t.key, meta);
  ctx_.log.line("Recreating the memory snapshot (at most once per deploy).");
  try {
    create_locked(t, meta);
    return true;
  } catch (const std::exception& e) {
    ctx_.log.line(std::string("Could not recreate the memory snapshot: ") + e.what());
    return false;
  }
}

std::unique_ptr<Worker> Snapshots::start_worker(const Target& t, bool use_snapshot) {
  // A start the runtime's interruption stopped says nothing about the
  // snapshot: it is neither blamed nor recreated, and no cold start follows.
  if (t.key.empty() || !use_snapshot) return cold_start(t);
  if (json meta = ctx_.store.read_meta(t.key).value_or(json::object()); !complete(t.key, meta)) {
    const json failed = meta.value("create_failed", json::object());
    int64_t disk_full_at = failed.value("disk_full_at", int64_t{0});
    bool retry = disk_full_at > 0 && ::time(nullptr) - disk_full_at >= snapshot_retry_seconds_from_env();
    if (failed.value("version", -1) == t.version && !retry) {
      ctx_.log.line("No memory snapshot for " + t.label() + " (creating it failed: " +
                    failed.value("reason", "") + ").");
      return cold_start(t);
    }
    if (retry) ctx_.log.line("Trying again to create the memory snapshot of " + t.label() + " (the disk was full).");
    try {
      ensure(t, false);
    } catch (const std::exception& e) {
      launcher_.refuse_if_aborted();
      ctx_.log.line(std::string("Could not create a memory snapshot: ") + e.what() + "; cold-starting the container.");
      return cold_start(t);
    }
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    json meta = ctx_.store.read_meta(t.key).value_or(json::object());
    if (meta.value("recreated", false) && meta.value("failures_since_created", 0) >= kFailuresBeforeGivingUp) {
      ctx_.log.line("Memory snapshot of " + t.label() + " failed " + std::to_string(kFailuresBeforeGivingUp) +
                    " times since it was recreated; cold-starting until the next deploy.");
      break;
    }
    uint64_t generation = meta.value("generation", uint64_t{0});
    try {
      auto w = restore(t, meta);
      if (meta.value("failures_since_created", 0) > 0) note_success(t);
      return w;
    } catch (const WorkerFailed& e) {
      launcher_.refuse_if_aborted();
      // The process came back and the app raised in @enter(snap=False): its
      // own error, or one the restore caused? A cold start tells. If its
      // @enter fails too, the error is the function's: it goes to the caller
      // (the exception propagates) and the snapshot is not blamed (a user's
      // bug must not spend its one recreation or disable it).
      ctx_.log.line(std::string("The restored container failed to start: ") + e.what() +
                    "; cold-starting to tell whether the memory snapshot is at fault.");
      auto w = cold_start(t);
      ctx_.log.line("The cold start worked: the memory snapshot is at fault.");
      on_restore_failure(t, generation, e.what(), /*retry=*/false);
      return w;
    } catch (const std::exception& e) {
      launcher_.refuse_if_aborted();
      if (!ctx_.store.has_image(t.key)) {
        // Removed meanwhile (a handle's, by the cap; or `thaw snapshot
        // rm`): missing, not failing. Made again, as a missing one is.
        ctx_.log.line("The memory snapshot of " + t.label() + " was removed meanwhile; making it again.");
        try {
          ensure(t, false);
        } catch (const std::exception& again) {
          ctx_.log.line(std::string("Could not create a memory snapshot: ") + again.what() +
                        "; cold-starting the container.");
          break;
        }
        continue;
      }
      if (address_taken(e.what())) {
        ctx_.log.line(std::string("Restore from memory snapshot failed: ") + e.what() +
                      "; the address is held by another process (another container of this snapshot?): "
                      "cold-starting this container, the snapshot not blamed (start servers in "
                      "@enter(snap=False) to restore every container).");
        break;
      }
      if (!on_restore_failure(t, generation, e.what())) break;
    }
  }
  return cold_start(t);
}

}  // namespace thaw::runtime
