// Snapshots of class handles with other settings (Cls.with_options with
// env, secrets, volumes, gpu, cpu or memory: runtime/options.h). One is made
// per distinct set of values, so a caller that varies them (an env per
// tenant) would fill the disk with full images; at most `max` are kept per
// function, and making one more removes the one least recently called.
#pragma once
#include <string>
#include <vector>

#include "runtime/log.h"
#include "runtime/store.h"
#include "runtime/target.h"

namespace thaw::runtime {

// The default of THAW_MAX_HANDLE_SNAPSHOTS, per function.
constexpr int kDefaultMaxHandleSnapshots = 8;
// Records of refused ones kept per snapshot kept (max × this).
constexpr size_t kRefusedRecordsPerSnapshot = 8;

// THAW_MAX_HANDLE_SNAPSHOTS from the runtime's environment (1 at least).
int max_handle_snapshots_from_env();

// Records that a handle with this snapshot was called now (the mtime of the
// snapshot's "used" file, made with it; nothing when there is none).
bool note_handle_snapshot_used(const Store& store, const std::string& key);
// Makes the "used" file of a handle's snapshot just made.
void mark_handle_snapshot_made(const Store& store, const std::string& key);

// Once t's handle snapshot is made (so that a failed one costs no other),
// or refused: removes the least recently used others of the same app and
// function until `max` are left, t's included (one that another thread or
// runtime has locked is left alone); the records of refused ones (their
// meta.json alone) are capped apart, at max × kRefusedRecordsPerSnapshot.
// Returns the image paths
// removed, for the restore shells to forget.
std::vector<std::string> make_room_for_handle_snapshot(Store& store, const Target& t, int max, Log& log);

}  // namespace thaw::runtime
