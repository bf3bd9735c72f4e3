// $THAW_HOME/serialized/<sha256>.pkl: the pickles of serialized=True
// functions and classes, written by the SDK (python/thaw/_functions.py,
// _write_serialized) and loaded by their containers. Nothing else removes
// them, so the runtime sweeps away the ones nothing uses any more.
//
// A pickle is used while (a) an app's current version names it: its
// containers, restored ones too, load it; (b) a live process holds a shared
// flock on it: the SDK process that wrote or reuses it (a `thaw run`
// entrypoint, a script in `app.run()`), and each runtime pool serving it;
// or (c) a deploy is under way, which holds serialized/.lock shared from
// before it introspects until its record names the pickles. A version
// replaced or stopped needs none: a rollback deploys its code again, which
// pickles afresh.
#pragma once
#include <string>

#include "common/unique_fd.h"
#include "runtime/log.h"
#include "runtime/store.h"

namespace thaw::runtime {

// A shared flock on the pickle at path, for as long as the fd is open
// (invalid when there is no such file: its containers fail to start, saying so).
UniqueFd hold_serialized(const std::string& path);

// Held (shared) by a deploy: no sweep runs meanwhile.
class DeployingSerialized {
 public:
  explicit DeployingSerialized(const Store& store);

 private:
  UniqueFd fd_;
};

// Removes the pickles no current version names and no process holds; none
// while a deploy is under way. Returns how many it removed (logged).
int sweep_serialized(const Store& store, Log& log);

}  // namespace thaw::runtime
