// A process tree: the target's running descendants go into the image with it
// (Manifest::children) and come back as its descendants, with their pids.
// What they share is kept shared: open file descriptions inherited across
// fork, and pipes and socket pairs between them (the pool, files.cpp).
#include "engine/resources/tree.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/error.h"
#include "common/io.h"
#include "engine/engine.h"
#include "engine/resources/resources.h"
#include "proc/return_frame.h"

namespace thaw::engine {

namespace {

// A child made by clone() with CLONE_VM, CLONE_FILES or CLONE_SIGHAND (a
// vfork child before its exec, say) shares that table with its parent; each
// restored process would get its own, and the two would silently diverge.
void refuse_shared_tables(pid_t parent, pid_t kid) {
  const struct {
    int type;
    const char* what;
  } tables[] = {{KCMP_VM, "its memory (a vfork child that has not called exec yet, or clone(CLONE_VM))"},
                {KCMP_FILES, "its fd table (clone(CLONE_FILES))"},
                {KCMP_SIGHAND, "its signal handlers (clone(CLONE_SIGHAND))"}};
  for (const auto& t : tables)
    if (::syscall(SYS_kcmp, parent, kid, t.type, 0, 0) == 0)
      fail("it shares ", t.what, " with its parent ", parent, "; not supported: take the checkpoint once it has "
           "called exec or exited (for a vfork child, ", kPassingState, ")");
}

}  // namespace

std::vector<Descendant> seize_descendants(pid_t root, proc::Seizure& seizure) {
  std::vector<Descendant> out;
  // A held process makes no new child; one of its children may, until it
  // too is held, and its own children are listed only after that.
  auto take_children_of = [&](pid_t parent, proc::Seizure& held) {
    for (pid_t kid : running_children(parent, held))
      with_context(cat("child process ", kid, proc::command_line(kid)), [&] {
        Descendant d;
        d.pid = kid;
        d.parent = parent;
        d.state = proc::read_status(cat("/proc/", kid))["State"];
        d.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, kid, 0)));
        if (!d.pidfd) fail_errno("pidfd_open");
        proc::ReturnGadgets ret = proc::find_return_gadgets(kid);
        d.seizure = std::make_unique<proc::Seizure>(kid);
        d.seizure->set_gadget(proc::find_syscall_gadget(kid));
        d.seizure->protect_from_our_death(&ret);
        refuse_shared_tables(parent, kid);
        out.push_back(std::move(d));
      });
  };
  take_children_of(root, seizure);
  for (size_t i = 0; i < out.size(); i++) take_children_of(out[i].pid, *out[i].seizure);
  return out;
}

std::string describe_kids(const std::vector<Descendant>& kids) {
  std::string s;
  for (const auto& k : kids) s += cat(s.empty() ? "" : ", ", k.pid, proc::command_line(k.pid));
  return s;
}

namespace {

// Whether tree member k is member j or below it.
bool descends_from(const std::vector<const image::Manifest*>& tree, size_t k, size_t j) {
  pid_t want = restore_pid(*tree[j]);
  for (size_t hops = 0; hops <= tree.size(); hops++) {
    if (restore_pid(*tree[k]) == want) return true;
    pid_t parent = tree[k]->process.parent;
    size_t next = tree.size();
    for (size_t i = 0; i < tree.size(); i++)
      if (restore_pid(*tree[i]) == parent) next = i;
    if (next == tree.size()) return false;
    k = next;
  }
  return false;
}

}  // namespace

void make_children(RestoreContext& r, void (*restore_child)(RestoreContext& child)) {
  pid_t me = restore_pid(r.m);
  for (size_t j = 1; j < r.tree.size(); j++) {
    const image::Manifest& km = *r.tree[j];
    if (km.process.parent != me) continue;
    pid_t kid = clone_with_pid(restore_pid(km));
    if (kid < 0) fail_errno("make child process ", restore_pid(km), " (", km.process.comm, ") again");
    // Into its process group (restore_session), before a sibling made
    // next may join it.
    if (kid > 0 && !r.on_tty && !km.process.session_leader) {
      pid_t group = km.process.group_leader ? kid : km.process.pgid;
      if (group != 0) ::setpgid(kid, group);
    }
    if (kid == 0) {
      RestoreContext kr{km, r.img, {}};
      kr.tree = r.tree;
      kr.member = j;
      kr.on_tty = r.on_tty;
      kr.status_fds = r.status_fds;
      // Only the status pipes of its own subtree pass through it.
      for (size_t k = 0; k < kr.status_fds.size(); k++)
        if (kr.status_fds[k] >= 0 && !descends_from(r.tree, k, j)) {
          ::close(kr.status_fds[k]);
          kr.status_fds[k] = -1;
        }
      kr.pool_fds = r.pool_fds;
      kr.shmem_fds = r.shmem_fds;
      kr.pages_fd = r.pages_fd;
      kr.stage = r.stage;
      kr.staged = r.staged;
      kr.stage_start = r.stage_start;
      kr.stage_end = r.stage_end;
      restore_child(kr);
      ::_exit(70);  // restore_child does not return
    }
  }
  // Each child has its copies now; ours of the others' would keep thaw
  // from seeing their status pipes close.
  for (size_t j = 0; j < r.status_fds.size(); j++)
    if (j != r.member && r.status_fds[j] >= 0) {
      ::close(r.status_fds[j]);
      r.status_fds[j] = -1;
    }
}

}  // namespace thaw::engine
