// Restore shells: one helper process per snapshot image (`thaw
// __restore-shell IMAGE`) that reads and verifies the image once and then
// forks one restore of it per container asked for, each with the image
// already parsed (engine::RestoreOptions::preloaded).
//
// Why a process of its own: engine::restore forks and runs a good deal of
// code in the child (the engine's init, the new process's setup), which is
// safe only in a single-threaded process — the runtime has many threads, the
// shell has one. Why it lives on: each restore then skips an exec of thaw and
// the manifest's read and parse (20–37 ms of a torch image).
//
// A restore forked by the shell is the runtime's child, not the shell's
// (clone3 with CLONE_PARENT), so the runtime waits for and kills it like any
// container root process; the shell can end (or be replaced when the image
// is recreated) while containers it restored run on.
#pragma once
#include <sys/types.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"
#include "container/spawn.h"
#include "container/spec.h"

namespace thaw::container {

// The shell ended or stopped answering (nothing was restored): a new shell
// of the same image may do.
class RestoreShellGone : public Error {
 public:
  using Error::Error;
};

class RestoreShell {
 public:
  // Starts the shell of image and waits until it has read the image;
  // throws with the reason it cannot (a missing or corrupt image).
  // With `live_template`, the shell also keeps a live template of the
  // image (engine/template.h), made once no restore waits, and restores
  // copies of it: each shares the template's memory instead of reading it
  // from the image. For long-lived runtimes (`thaw serve`): the template
  // costs one restore's time and memory up front.
  static std::unique_ptr<RestoreShell> start(const std::string& image, const std::string& thaw_exe, int log_fd,
                                             int timeout_ms, bool live_template = false);
  // Closes the request socket (the shell exits on EOF) and reaps the shell.
  ~RestoreShell();
  RestoreShell(const RestoreShell&) = delete;
  RestoreShell& operator=(const RestoreShell&) = delete;

  const std::string& image() const { return image_; }
  // How long the shell took to read and check the image.
  double load_ms() const { return load_ms_; }

  // Forks one restore of the image into a container described by spec
  // (its id, mounts and cgroups). The restore process gets fds[i] as its
  // fd i (0 stdin, 1 and 2 output, 3 the control channel, 4 the report
  // pipe), leads a session of its own and is our child. Thread-safe.
  // Throws RestoreShellGone if the shell is gone, Error if it cannot fork.
  Child fork_restore(const Spec& spec, const std::array<int, 5>& fds);
  // False once the shell has ended or stopped answering.
  bool usable();

 private:
  RestoreShell() = default;

  std::mutex mu_;  // one request on the socket at a time
  std::string image_;
  Child proc_;
  UniqueFd sock_;
  double load_ms_ = 0;
};

// `thaw __restore-shell IMAGE`, started by RestoreShell::start with fd 3
// its request socket.
int restore_shell_main(int argc, char** argv);

}  // namespace thaw::container
