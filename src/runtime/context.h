// What every part of the runtime needs to know about its surroundings,
// resolved once and passed explicitly: the store, the log, the thaw binary,
// the Python interpreter and thaw's Python package, the machine fingerprint.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "container/live.h"
#include "runtime/fingerprint.h"
#include "runtime/log.h"
#include "runtime/store.h"

namespace thaw::runtime {

struct Context {
  Store store;
  Log& log;
  std::string thaw_exe;    // /proc/self/exe, resolved
  std::string python = "/usr/bin/python3";
  std::string python_dir;  // the directory holding the thaw package
  std::string socket_path; // the runtime's client socket, when it has one
  std::string web_url;     // "http://host:port" when web endpoints are served
  Fingerprint fingerprint;
  // The containers launched with this context, for a forced exit to kill.
  std::shared_ptr<container::LiveContainers> live = std::make_shared<container::LiveContainers>();
};

// Store at $THAW_HOME; Python package at $THAW_PYTHONPATH, else
// <thaw binary's dir>/../python, else the source tree's python/.
Context make_context(Log& log);

// The environment for Python processes the runtime starts on the user's
// behalf (introspection, local entrypoints): ours, with thaw's package first
// on PYTHONPATH and THAW_BIN set.
std::vector<std::string> user_python_env(const Context& ctx);

struct Captured {
  int status = -1;
  std::string out;
};

// Runs argv with stdout captured (stderr goes to the log), within timeout_s.
Captured run_capture(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     const std::string& cwd, int log_fd, double timeout_s);

}  // namespace thaw::runtime
