// `thaw deploy app.py`: introspect the app, store a new version with a copy
// of its code, create the memory snapshot of every function that asks for
// one (so that even the first call restores), make the version current and
// retire the snapshots it supersedes.
#pragma once
#include <string>

#include "runtime/runtime.h"

namespace thaw::runtime {

struct DeployOptions {
  std::string file;
  std::string name;  // overrides the App's name when set
  // `thaw app rollback`: the version whose stored code this deploys again
  // (file is then that version's copy of the app file); 0 for a deploy.
  int rollback_of = 0;
  std::string source_file;  // recorded as the source instead of file when set
};

// Prints progress to the log and a summary to stdout; returns the exit code.
int deploy(Runtime& rt, const DeployOptions& o);

}  // namespace thaw::runtime
