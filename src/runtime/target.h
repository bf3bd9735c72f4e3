// One function of one app version, resolved to everything needed to start
// its containers.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/app.h"

namespace thaw::runtime {

struct Target {
  std::string app;
  int version = 0;        // 0: an ephemeral app (`thaw run`)
  std::string app_file;   // the file the worker imports (the store's copy when deployed)
  std::string cwd;        // the worker's working directory
  FunctionDesc fn;
  std::string key;        // snapshot key; empty when this target takes no snapshots
  // Cls.with_options & co (runtime/options.h): the config keys overridden,
  // for the worker, and a digest of all the options ("" without any).
  nlohmann::json config_overrides = nlohmann::json::object();
  std::string variant;
  // Whether the options gave it a snapshot of its own (key != the deployed one's).
  bool own_snapshot = false;

  std::string label() const { return app + "." + fn.name; }
  std::string pool_id() const {
    // An ephemeral app without a file (a notebook's) is known by its name
    // and the caller's directory, where its containers work.
    std::string where = app_file.empty() ? app + "@" + cwd : app_file;
    std::string id = version ? app + "@v" + std::to_string(version) + "/" + fn.name : "ephemeral:" + where + "/" + fn.name;
    // A serialized function redefined under the same name (a script run
    // again against `thaw serve`) must not get the old one's containers.
    if (!fn.serialized_file.empty()) id += "#" + fn.serialized_file;
    return variant.empty() ? id : id + "+" + variant;
  }
};

}  // namespace thaw::runtime
