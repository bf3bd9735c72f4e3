// What a snapshot depends on in the machine that takes it ("worker type" in
// Modal's words). Everything but the CPU flags goes into the snapshot key;
// the flags are stored with the snapshot and compared at restore, so that a
// snapshot from a CPU with fewer features restores here and one needing
// features this CPU lacks never does.
#pragma once
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thaw::runtime {

struct Fingerprint {
  std::string kernel;        // uname release
  std::string cpu_vendor;    // vendor_id
  std::string cpu_model;     // "family F model M: model name"
  std::string gpu;           // "NVIDIA H100 80GB HBM3; driver 580.65.06", "" without a GPU
  // Not in the key: a snapshot taken on one GPU restores onto another of the
  // same model (the driver is given UUID pairs), so they are only recorded.
  std::string gpu_driver;    // "580.65.06"
  std::vector<std::string> gpu_models, gpu_uuids;
  std::string python;        // the interpreter: real path, size, mtime
  std::string thaw_version;
  // sha256 over the thaw package's Python files: the worker loop is in
  // every snapshot's memory, so a changed SDK must not restore an old one.
  std::string sdk;
  std::set<std::string> cpu_flags;

  // The part of the key that describes the machine (no flags).
  nlohmann::json key_part() const;
};

// python_dir: the directory holding the thaw package (its sdk hash).
Fingerprint read_fingerprint(const std::string& python, const std::string& python_dir);

// The flags in needed that this CPU lacks.
std::vector<std::string> missing_cpu_flags(const Fingerprint& here, const std::vector<std::string>& needed);

}  // namespace thaw::runtime
