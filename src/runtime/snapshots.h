// The snapshot lifecycle of a target: create it (global scope and
// @enter(snap=True) in a cold container, then engine::checkpoint), restore
// containers from it, and fall back to a cold start whenever that fails —
// counting failures in meta.json and recreating a failing snapshot at most
// once per deploy.
#pragma once
#include <memory>

#include "common/error.h"
#include "runtime/context.h"
#include "runtime/handle_snapshots.h"
#include "runtime/launcher.h"
#include "runtime/target.h"

namespace thaw::runtime {

// The engine refused to checkpoint a worker that did reach snapshot_ready:
// the function still runs, only without a snapshot.
class CheckpointRefused : public Error {
 public:
  using Error::Error;
};

class Snapshots {
 public:
  Snapshots(Context& ctx, Launcher& launcher) : ctx_(ctx), launcher_(launcher) {}

  // Makes sure t.key has an image, creating it if needed. For a deploy, it
  // is marked as belonging to t's version, which may recreate it once.
  // Returns false if it already existed. Throws (CheckpointRefused, or the
  // worker's error) if it cannot be created.
  bool ensure(const Target& t, bool for_deploy);

  // A ready worker for t: restored when t has a usable snapshot (created
  // first if missing), else cold. Throws only if a cold start fails too.
  std::unique_ptr<Worker> start_worker(const Target& t, bool use_snapshot = true);

  std::unique_ptr<Worker> cold_start(const Target& t);

  // A call to a handle with a snapshot of its own (runtime/handle_snapshots.h).
  // False when it has no snapshot (yet).
  bool note_used(const Target& t) { return note_handle_snapshot_used(ctx_.store, t.key); }

  Log& log() { return ctx_.log; }

 private:
  // Whether key has an image and the record written with it.
  bool complete(const std::string& key, const nlohmann::json& meta) const;
  // Creates the image and meta.json; the caller holds the snapshot's lock.
  void create_locked(const Target& t, nlohmann::json& meta);
  std::unique_ptr<Worker> restore(const Target& t, const nlohmann::json& meta);
  // Records a failed restore (recreating the snapshot once per deploy);
  // returns true if the caller should try the snapshot again. Without
  // `retry` the caller has its container already (and it logs the failure).
  bool on_restore_failure(const Target& t, uint64_t generation, const std::string& reason, bool retry = true);
  void note_success(const Target& t);

  Context& ctx_;
  Launcher& launcher_;
};

}  // namespace thaw::runtime
