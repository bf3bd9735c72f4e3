// One function of one app version, resolved to everything needed to start
// its containers.
#pragma once
#include <string>

#include "runtime/app.h"

namespace thaw::runtime {

struct Target {
  std::string app;
  int version = 0;        // 0: an ephemeral app (`thaw run`)
  std::string app_file;   // the file the worker imports (the store's copy when deployed)
  std::string cwd;        // the worker's working directory
  FunctionDesc fn;
  std::string key;        // snapshot key; empty when this target takes no snapshots

  std::string label() const { return app + "." + fn.name; }
  std::string pool_id() const {
    return version ? app + "@v" + std::to_string(version) + "/" + fn.name : "ephemeral:" + app_file + "/" + fn.name;
  }
};

}  // namespace thaw::runtime
