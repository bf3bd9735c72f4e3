// tree.cpp: a process's running descendants (a process tree). At checkpoint
// each is held like the target itself and becomes a Manifest::children entry;
// at restore each process makes its own children again with their pids,
// before its fd table is built, so that they inherit the open file
// descriptions the tree shares (Manifest::pool).
#pragma once
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "engine/context.h"
#include "proc/ptrace.h"

namespace thaw::engine {

struct Descendant {
  pid_t pid = 0, parent = 0;
  std::string state;  // /proc/PID/status State before it was held
  UniqueFd pidfd;
  std::unique_ptr<proc::Seizure> seizure;
};

// Holds every running descendant of `root` (held by `seizure`), parents
// before their children; fails naming one that cannot be held.
std::vector<Descendant> seize_descendants(pid_t root, proc::Seizure& seizure);
// "12 (python3 worker.py), 13 (sleep 100)".
std::string describe_kids(const std::vector<Descendant>& kids);

// Restore side, in the new process `r`: makes each of its children in the
// image (clone3 with their pids), each of which goes on to become_restored.
// `restore_child` is that sequence (restore.cpp), given the child's context.
void make_children(RestoreContext& r, void (*restore_child)(RestoreContext& child));

// fork_shared.cpp: pages a fork left the tree's processes sharing come back
// shared. Which of the root's mappings are staged (per Manifest::vmas
// entry; never lazy): those its descendants have pages of in common with it.
std::vector<bool> staged_mappings(const std::vector<const image::Manifest*>& tree);
// In the root, before make_children: reads the mappings r.stage names into a
// staging area its children inherit (r.staged, r.stage_start/end).
void stage_shared_memory(RestoreContext& r);
// For plan_memory: whether mapping `v` of r's process is moved out of the
// staging area; then `rv` says from where and which ranges become zeros,
// and `runs` keeps only the runs that differ from the root's pages.
bool plan_inherited(RestoreContext& r, const image::Vma& v, rst_vma& rv, std::vector<image::PageRun>& runs);

}  // namespace thaw::engine
