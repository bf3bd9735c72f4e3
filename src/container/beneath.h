// File operations inside a directory that a container may change while
// they run (a Volume): every path is resolved from an open directory fd
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a directory
// swapped for a link between a check and its use stops the operation
// instead of leading it out (to read, write or delete the host's files).
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace thaw::container {

// Opens `rel` (relative, no "..") under `dir`; no part of it may be a
// link. Throws naming `shown` (the path as the user gave it) and what is
// wrong: "is a symbolic link", "does not exist", ...
UniqueFd open_beneath(int dir, const std::string& rel, int flags, const std::string& shown, mode_t mode = 0);

// The directory `rel` under `dir`, made with its parents where missing.
UniqueFd make_dirs_beneath(int dir, const std::string& rel, const std::string& shown);

struct Entry {
  std::string name;
  char type;  // 'd' directory, 'f' regular file, 'l' link, '?' other
  int64_t mtime = 0;
  uint64_t size = 0;
};
// The entries of the open directory `dir` (no . and ..), sorted by name.
std::vector<Entry> list_beneath(int dir);

// Copies a local file or tree (the user's own paths, links at its top
// followed once, links under it refused) to `name` in `dir`. An existing
// file is an error unless `force`.
void copy_into(const std::string& local, int dir, const std::string& name, bool force, const std::string& shown);
// Copies file or tree `name` of `dir` to the local path `local`.
void copy_out_of(int dir, const std::string& name, const std::string& local, bool force, const std::string& shown);
// Removes `name` of `dir`, a tree with what it holds; links themselves
// are removed, never followed.
void remove_beneath(int dir, const std::string& name);

}  // namespace thaw::container
