// Parsers for the /proc files checkpoint reads.
#pragma once
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace thaw::proc {

struct MapEntry {
  uint64_t start = 0, end = 0;
  int prot = 0;  // PROT_* bits
  bool shared = false;
  uint64_t pgoff = 0;
  unsigned dev_major = 0, dev_minor = 0;
  uint64_t ino = 0;
  std::string name;
  std::vector<std::string> vmflags;  // from smaps, when asked for
  bool has_flag(const char* f) const;
};

// pid 0: this process (our pid may be from another namespace than /proc's).
std::vector<MapEntry> read_maps(pid_t pid, bool with_smaps);
std::vector<pid_t> list_threads(pid_t pid);
// The children of every thread of `pid` (/proc/PID/task/*/children).
// " (python3 -m http.server)": what a process runs, for messages naming it
// (its name where it has no command line: a zombie, a kernel thread).
std::string command_line(pid_t pid);
std::vector<pid_t> list_children(pid_t pid);
// "Key:\tvalue" lines of /proc/PID[/task/TID]/status.
std::map<std::string, std::string> read_status(const std::string& proc_dir);
// Fields of /proc/PID/stat after the comm, 0-based from field 3 (state).
std::vector<std::string> read_stat_fields(pid_t pid);
std::string read_link(const std::string& path);
// Whether the file process `pid` has open or mapped as `link` (what /proc
// showed for it) with `st` (its stat through /proc) was unlinked. /proc
// writes " (deleted)" after such a path, which a file's name may also end
// with: the file decides (no links left, or the path no longer leads to it
// in the process's view of the filesystem).
bool unlinked(pid_t pid, const std::string& link, const struct stat& st);
// The path /proc shows for a file, without that suffix.
std::string without_deleted(const std::string& link);
// The last (innermost) id of an NSpid/NStgid line of /proc/.../status.
pid_t innermost_id(const std::string& ns_ids);
// The cgroups a process is in, one per line of /proc/PID/cgroup ("self"
// for this one): `controllers` as ",cpu,cpuacct," (",," for cgroup v2's
// line), `path` from its hierarchy's root. Empty if it cannot be read.
struct CgroupLine {
  std::string controllers, path;
};
std::vector<CgroupLine> read_cgroups(const std::string& pid);
// "/a/b" -> "/a", "/a" -> "/"; "/" for "/" or "".
std::string parent_cgroup(const std::string& path);
// MemAvailable of /proc/meminfo, in bytes (0 if it cannot be read).
uint64_t mem_available_bytes();
// What this process may still allocate: MemAvailable, or less where a
// memory cgroup it is in (or one above it) leaves less below its limit.
uint64_t memory_headroom_bytes();
std::map<std::string, std::string> read_fdinfo(pid_t pid, int fd, std::vector<std::string>* extra_lines);

}  // namespace thaw::proc
