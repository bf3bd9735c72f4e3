// The inode numbers of the files of a container's /dev/shm, kept beside
// the snapshot's copy of them (dev_shm_files.h) and given back to the
// files of every container restored from it.
//
// Why: SQLite remembers the inode number of a database file when it opens
// it and, before each write, refuses to write when the file's path names
// another inode ("attempt to write a readonly database",
// SQLITE_READONLY_DBMOVED). A database in the container's temporary
// directory, opened in the snapshot phase (an SQLAlchemy engine's pool),
// was read-only in every restored container, whose /dev/shm is a fresh
// tmpfs. A tmpfs numbers its inodes in the order they are made (one
// counter per mount, its root 1), so making the files in the order of
// their numbers, with as many numbers skipped between them as the
// original container skipped (files it removed, mount points), gives each
// its number back.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace thaw::container {

struct SavedInode {
  uint64_t ino;
  std::string path;  // relative to /dev/shm
};
using SavedInodes = std::vector<SavedInode>;

// Where the list of a copy in `saved_dir` is kept: beside it, not in it
// (every name in the copy is a file of the container's).
std::string saved_inodes_path(const std::string& saved_dir);

void write_saved_inodes(const SavedInodes& list, const std::string& path);
// Empty when there is no list (an image made before the lists were kept):
// its files are then made in the order of their names.
SavedInodes read_saved_inodes(const std::string& path);

// Into the tmpfs `root`, in which nothing was made since its mount, makes
// the entries of `list` empty (directories, regular files, symlinks and
// FIFOs of the types they have in the copy `saved`), in the order of their
// numbers, each given its own where the numbers allow it: a number already
// passed (an entry moved into a directory made after it) is not given
// again. A file of several names (hard links) is made once and linked
// at the others. The copy then fills them (dev_shm_files.cpp).
void make_in_inode_order(int saved, int root, const SavedInodes& list);

}  // namespace thaw::container
