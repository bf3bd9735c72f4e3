// Small filesystem helpers shared by the container and runtime layers.
#pragma once
#include <string>
#include <vector>

namespace thaw::container {

// mkdir -p; throws with the path on failure.
void mkdir_p(const std::string& path, unsigned mode = 0755);
// Writes data to path.tmp.<pid>, fsyncs, renames over path: readers see the
// old or the new content, never a partial one.
void write_file_atomic(const std::string& path, const std::string& data, unsigned mode = 0644);
// rm -rf; missing paths are fine.
void remove_tree(const std::string& path);
// Names in a directory (no . and ..); empty if it does not exist.
std::vector<std::string> list_dir(const std::string& path);
bool exists(const std::string& path);
bool is_dir(const std::string& path);
// Copies a regular file (content and mode), creating parent directories.
void copy_file(const std::string& from, const std::string& to);
// Total size of the regular files under path.
uint64_t tree_bytes(const std::string& path);

}  // namespace thaw::container
