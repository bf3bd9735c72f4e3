// Restores that copy nothing: a live template of an image, forked per
// restore.
//
// A restore from the image file must put every page the process touches
// into fresh memory (~75 MiB for a torch worker: ~50 ms here). A template
// is the image restored once, eagerly, and held stopped under ptrace,
// never run; each restore forks it, so the copy shares every page with it
// until it writes one, and runs again within a fork's time (~10 ms for a
// torch worker).
//
// What a copy is given, from outside, by system calls injected into the
// template, a helper and the copy:
// - its pid: the image's, in the pid namespace of `ns_init` (which must be
//   pid 1 of a fresh namespace). The template joins that namespace for its
//   children, makes a helper there sharing its memory (CLONE_VM: no copy),
//   and the helper forks the copy with the image's pid and exits, so the
//   copy's parent becomes `ns_init`, which can wait for it like for its own
//   child (exit status included);
// - the per-thread state a fork does not carry (robust futex list,
//   clear-child-tid, rseq, sigaltstack), a session of its own, and
//   ns_init's mount, uts and ipc namespaces (then its cwd again);
// - the image's other threads: the template holds the main thread only (a
//   fork copies no other), and each copy makes the rest with
//   clone3(CLONE_THREAD) and their tids, then loads their state;
// - its fds, passed over a socket the template holds: the inherited ones
//   (RestoreOptions::inherit), and its own files, every other fd of the
//   image (pipes with their data, unix socket pairs, eventfds, epoll,
//   timerfds, signalfds, regular files at their offsets), opened anew for
//   each copy as a restore would, by the copy's namespace init
//   (send_copy_files);
// - memory a fork leaves out or zeroes (MADV_DONTFORK, MADV_WIPEONFORK
//   private anonymous mappings), mapped and filled again from the template,
//   and the mlock()s a fork drops;
// - the image's registers, FPU state and signal mask.
// Which images qualify (ineligible()): no GPU state, no shared memory
// objects, no MADV_DONTFORK/WIPEONFORK mappings but private anonymous
// ones, no timers or pending signals, not stopped, run by root, no
// listening or bound sockets (the template holds their addresses) and no
// named FIFOs (one object by path). Others restore from the image.
//
// Costs: the template holds the image's memory (as much as one restored
// process) and a copy's shared pages are charged to the template's memory
// cgroup, not the copy's. Everything a copy does to its pages is its own.
#pragma once
#include <sched.h>
#include <sys/types.h>
#include <sys/user.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "engine/context.h"

namespace thaw::image {
class Reader;
}

namespace thaw::engine {

class Template {
 public:
  // Why `img` cannot serve as a template, or "" if it can.
  static std::string ineligible(const image::Manifest& m);
  // pid 1 of a copy's namespace (ns_init), once the namespace is set up:
  // checks that no file the image maps is gone or changed (copies share the
  // template's mappings, made when the template was, so this runs before
  // each copy, where its paths resolve as they will for the copy) and says
  // so on `ready` ("OK", or "E <why>"), which it then closes. If OK, waits
  // for 'G' on `go` (the copy, its child from then on, runs), then forwards
  // termination signals to the copy and reaps until it ends. Returns its
  // exit status (128 + signal if killed), or -1: files changed, or `go`
  // said anything else or closed.
  static int run_as_init(const image::Manifest& m, pid_t copy, int ready, int go);
  // For the copy's namespace init, before run_as_init: opens the copy's own
  // files (every fd of the image that is not inherited) as a restore from
  // the image would, here, where paths resolve as the copy will see them,
  // and sends them on `sock` to receive_copy_files. `inherit` holds the
  // image's inherited fds as this process has them (an epoll may watch
  // them). Renumbers our own fds, `keep` (updated in place), and closes
  // every other fd, the image's page data in `img` included: use only its
  // manifest after this.
  static void send_copy_files(const image::Reader& img, const std::map<int, int>& inherit,
                              const std::vector<int*>& keep, int sock);
  // What send_copy_files sent: fd in the image -> ours, for spawn()'s
  // `inherit`. Throws if it sent an error or nothing within timeout_ms.
  static std::map<int, UniqueFd> receive_copy_files(int sock, int timeout_ms);
  // Fails naming an fd the image had connected outside that `inherit` gives
  // neither it nor a dup of it (another fd of its open file description).
  static void check_inherited(const image::Manifest& m, const std::map<int, int>& inherit);
  // Restores `img` held (every page now: ~100-200 ms for a torch worker).
  // Throws with the reason it cannot; the image itself is not touched.
  static std::unique_ptr<Template> create(const image::Reader& img);
  ~Template();
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  struct Copy {
    pid_t host_pid = 0;    // in our pid namespace
    double fork_ms = 0;    // the helper's fork of the template
    double total_ms = 0;   // everything, until it runs
  };
  // Makes a copy in the pid namespace of `ns_init` (our pid namespace's
  // view) and in those of its other namespaces that `namespaces` names
  // (CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC), with `inherit` (fd in the
  // image -> fd of ours) installed; calls `before_run` with its pid (to put
  // it into cgroups) and lets it run.
  // Throws on failure, with the copy (if any) killed; the template stays
  // usable unless the error says otherwise (usable()).
  Copy spawn(pid_t ns_init, const std::map<int, int>& inherit, const std::function<void(pid_t)>& before_run,
             int namespaces = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC);
  // False once the template died or an injection left it in an unknown state.
  bool usable() const { return usable_; }
  pid_t pid() const { return held_.pid; }
  // The pid of every copy in its namespace: the image's.
  pid_t copy_pid() const;

 private:
  Template() = default;
  pid_t make_helper(pid_t ns_init);
  pid_t clone_in(proc::Tracee& t, uint64_t flags, int exit_signal, pid_t tid, const char* where);
  pid_t fork_copy(pid_t helper);
  void end_helper(pid_t helper);
  void set_up_copy(proc::Tracee& copy, const std::map<int, int>& inherit, int namespaces);
  void pass_fds(proc::Tracee& t, const std::map<int, int>& inherit);
  void take_posix_locks(proc::Tracee& t);
  void pass_fd_batch(proc::Tracee& t, const std::vector<int>& targets, const std::vector<int>& ours);
  void set_up_thread(proc::Tracee& t, const image::Thread& th);
  // Adds the made threads to `tids` and, with their image threads, to `made`.
  void add_threads(proc::Tracee& main, std::vector<pid_t>& tids,
                   std::vector<std::pair<pid_t, std::vector<int>>>& held_signals,
                   std::vector<std::pair<pid_t, const image::Thread*>>& made);
  void add_unforked_memory(proc::Tracee& main);
  void drain_carrier();

  const image::Manifest* m_ = nullptr;
  image::Thread main_;
  HeldProcess held_;
  UniqueFd carrier_send_, carrier_recv_;  // both ends; the template holds a copy of recv at carrier_fd_
  int carrier_fd_ = -1;
  bool usable_ = true;
};

}  // namespace thaw::engine
