// The checkpoint sequence: stop every thread, collect each kind of state,
// write the image atomically, then let the target go (or kill it, if asked,
// only after the image is safely on disk).
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>

#include "common/error.h"
#include "common/interrupt.h"
#include "common/io.h"
#include "common/timing.h"
#include "engine/engine.h"
#include "engine/resources/gpu.h"
#include "engine/resources/resources.h"
#include "engine/resources/tree.h"

namespace thaw::engine {


CheckpointStats checkpoint(const CheckpointOptions& o) {
  if (o.pid <= 0) fail("checkpoint: --pid ", o.pid, " is not a process id: give the pid of a running process");
  if (o.out.empty()) fail("checkpoint: --out is empty: give the image directory to create");
  return with_context(cat("checkpoint of process ", o.pid), [&] {
    auto t0 = std::chrono::steady_clock::now();
    CheckpointStats st;
    image::Writer writer(o.out);
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, o.pid, 0)));
    if (!pidfd) {
      int err = errno;
      // pidfd_open takes processes only; say what the number is instead.
      std::string tgid, text;
      if (try_read_file(cat("/proc/", o.pid, "/status"), &text))
        tgid = trim(proc::read_status(cat("/proc/", o.pid))["Tgid"]);
      if (!tgid.empty() && tgid != std::to_string(o.pid))
        fail("that is a thread of process ", tgid, ", not a process: use --pid ", tgid,
             " (every thread of a process is captured)");
      errno = err;
      fail_errno("no such process");
    }
    if (o.pid == ::getpid()) fail("thaw cannot checkpoint itself");
    // A process that has exited but was not reaped yet cannot be attached
    // to; say that rather than a puzzling ptrace error.
    auto status = proc::read_status(cat("/proc/", o.pid));
    std::string state = status["State"];
    if (!state.empty() && (state[0] == 'Z' || state[0] == 'X'))
      fail("process has exited (", state, "); there is nothing left to checkpoint");
    // Kernel threads have no user-space state to capture.
    if (trim(status["Kthread"]) == "1")
      fail("that is a kernel thread (", trim(status["Name"]), "): it has no user-space state to checkpoint");
    image::Manifest m;
    // Before seizing: the driver needs the target's threads running.
    auto gpu = suspend_gpu(o.pid, m);
    st.gpu_ms = ms_since(t0);
    if (gpu) st.gpu_detail = gpu->detail();
    throw_if_interrupted();
    // Looked for while the target still runs (checked again once held).
    proc::ReturnGadgets ret = proc::find_return_gadgets(o.pid);
    proc::Seizure seizure(o.pid);
    st.seize_ms = ms_since(t0) - st.gpu_ms;
    seizure.set_gadget(proc::find_syscall_gadget(o.pid));
    // kill -9 of thaw while a call runs injected must not kill the target.
    seizure.protect_from_our_death(&ret);

    // Its running descendants, each held the same way, parents first: a
    // process tree is one image (Manifest::children).
    std::vector<Descendant> kids = seize_descendants(o.pid, seizure);
    if (gpu && !kids.empty())
      fail("it uses CUDA and has child processes (", describe_kids(kids),
           "); a GPU snapshot takes a single process: start the children after the snapshot");

    m.thaw_version = THAW_VERSION;
    struct utsname u;
    ::uname(&u);
    m.kernel = u.release;
    std::deque<CheckpointContext> tree;
    tree.push_back(CheckpointContext{o.pid, seizure, writer, m, std::move(pidfd), {}, {}});
    m.children.resize(kids.size());
    for (size_t i = 0; i < kids.size(); i++)
      tree.push_back(CheckpointContext{kids[i].pid, *kids[i].seizure, writer, m.children[i], std::move(kids[i].pidfd), {}, {}});
    CheckpointContext& c = tree.front();
    auto shared_pages = kids.empty() ? nullptr : std::make_shared<SharedPages>();
    for (auto& mc : tree) {
      if (&mc != &c) mc.shmem_owner = &c;  // memory they may share is the root's
      if (&mc != &c) mc.who = cat("child process ", mc.pid, proc::command_line(mc.pid));
      mc.shared_pages = shared_pages;      // and pages a fork left them sharing, stored once
    }
    // Everything is captured once the pages are: a target that stays may
    // run on while they are read from a copy and the image goes to disk.
    // One to be killed stays stopped until the image is safely written, and
    // so does a tree (its pages are read with every process held).
    if (!o.kill && kids.empty() && !o.while_held)
      c.release_early = [&] {
        seizure.release();
        if (gpu) gpu->resume();
        st.stopped_ms = ms_since(t0);
      };
    std::vector<CheckpointContext*> members;
    for (auto& mc : tree) {
      // A CUDA process's memory is not forked: its device state was just
      // moved into it by the driver, which knows nothing of a copy.
      mc.copy_on_write = o.copy_on_write && !gpu && kids.empty();
      mc.tcp_close = o.tcp_close;
      mc.drop_outside = o.drop_outside;
      if (&mc == &c) mc.keep_outside = o.keep_outside;  // the restoring side gives the root's only
      else mc.keep_outside.clear();
      members.push_back(&mc);
    }
    auto t1 = std::chrono::steady_clock::now();
    // Between steps, a held Ctrl-C or SIGTERM (common/interrupt.h) unwinds:
    // the target is put back and the unfinished image removed. Once the
    // image is committed, the checkpoint is finished instead.
    for (auto& mc : tree)
      with_context(mc.who, [&] {
        for (auto step : {dump_process, dump_signals, dump_timers, dump_threads, dump_prctl, dump_scheduling}) {
          throw_if_interrupted();
          step(mc);
        }
      });
    for (size_t i = 0; i < kids.size(); i++) {
      auto parent = std::find_if(tree.begin(), tree.end(), [&](const CheckpointContext& x) { return x.pid == kids[i].parent; });
      m.children[i].process.parent = restore_pid(parent->m);
    }
    // A process group led by another process of the tree is joined again
    // at restore (a shell's pipeline, a group leader's children).
    for (auto& mc : tree) {
      pid_t pgrp = static_cast<pid_t>(std::stol(proc::read_stat_fields(mc.pid).at(2)));  // field 5
      for (const auto& leader : tree)
        if (leader.pid == pgrp && leader.pid != mc.pid) mc.m.process.pgid = restore_pid(leader.m);
    }
    throw_if_interrupted();
    dump_files(members);
    for (auto& mc : tree) {
      // Stopped by job control (SIGSTOP, Ctrl-Z): it comes back stopped.
      std::string mstate = state;
      for (const auto& k : kids)
        if (k.pid == mc.pid) mstate = k.state;
      mc.m.process.stopped = !mstate.empty() && mstate[0] == 'T';
      mc.maps = proc::read_maps(mc.pid, true);
      throw_if_interrupted();
      with_context(mc.who, [&] { dump_memory(mc); });
    }
    st.dump_ms = ms_since(t1);
    if (o.while_held) o.while_held();
    st.pages_from = c.pages_from;
    auto t2 = std::chrono::steady_clock::now();
    throw_if_interrupted();
    writer.commit(m);
    st.write_ms = ms_since(t2);
    if (o.kill) {
      for (auto& k : kids) k.seizure->kill_on_release();
      seizure.kill_on_release();
      if (gpu) gpu->keep_checkpointed();
    }
    // Children first: a parent let go first could wait for one still held.
    for (auto k = kids.rbegin(); k != kids.rend(); ++k) k->seizure->release();
    if (!seizure.released()) {
      seizure.release();
      st.stopped_ms = ms_since(t0);
    }
    st.processes = 1 + kids.size();
    for (auto& mc : tree) st.notes.insert(st.notes.end(), mc.notes.begin(), mc.notes.end());
    st.gpu_bytes = m.gpu.memory_bytes;
    st.pages_bytes = m.pages_bytes;
    st.threads = m.threads.size();
    st.vmas = m.vmas.size();
    st.fds = m.fds.size();
    for (const auto& kid : m.children) {
      st.threads += kid.threads.size();
      st.vmas += kid.vmas.size();
      st.fds += kid.fds.size();
    }
    st.total_ms = ms_since(t0);
    return st;
  });
}

}  // namespace thaw::engine
