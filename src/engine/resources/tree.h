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

}  // namespace thaw::engine
