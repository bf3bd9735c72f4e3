#include "proc/procfs.h"

#include <dirent.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <string_view>
#include <cstdint>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "common/io.h"

namespace thaw::proc {

namespace {
constexpr std::string_view kDeleted = " (deleted)";
bool has_deleted_suffix(const std::string& s) {
  return s.size() >= kDeleted.size() && s.compare(s.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0;
}
}  // namespace

bool unlinked(pid_t pid, const std::string& link, const struct stat& st) {
  if (st.st_nlink == 0) return true;
  if (!has_deleted_suffix(link)) return false;
  struct stat at;
  return ::stat(cat("/proc/", pid, "/root", link).c_str(), &at) != 0 || at.st_dev != st.st_dev ||
         at.st_ino != st.st_ino;
}

std::string without_deleted(const std::string& link) {
  return has_deleted_suffix(link) ? link.substr(0, link.size() - kDeleted.size()) : link;
}

bool MapEntry::has_flag(const char* f) const {
  return std::find(vmflags.begin(), vmflags.end(), f) != vmflags.end();
}

static bool parse_maps_line(const std::string& line, MapEntry* e) {
  unsigned long long start, end, off, ino;
  char perms[8];
  unsigned maj, min;
  int name_pos = 0;
  if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &off, &maj, &min,
                  &ino, &name_pos) < 7)
    return false;
  e->start = start;
  e->end = end;
  e->pgoff = off;
  e->dev_major = maj;
  e->dev_minor = min;
  e->ino = ino;
  e->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
            (perms[2] == 'x' ? PROT_EXEC : 0);
  e->shared = perms[3] == 's';
  e->name = name_pos > 0 && static_cast<size_t>(name_pos) <= line.size() ? line.substr(name_pos) : "";
  return true;
}

std::vector<MapEntry> read_maps(pid_t pid, bool with_smaps) {
  std::string path = cat("/proc/", pid ? std::to_string(pid) : std::string("self"), with_smaps ? "/smaps" : "/maps");
  std::string text = read_file(path);
  std::vector<MapEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    MapEntry e;
    if (parse_maps_line(line, &e) && line.find('-') < line.find(' ')) {
      out.push_back(std::move(e));
    } else if (with_smaps && line.rfind("VmFlags:", 0) == 0 && !out.empty()) {
      std::istringstream fl(line.substr(8));
      std::string f;
      while (fl >> f) out.back().vmflags.push_back(f);
    }
  }
  return out;
}

std::vector<pid_t> list_threads(pid_t pid) {
  std::vector<pid_t> out;
  std::string path = cat("/proc/", pid, "/task");
  DIR* d = ::opendir(path.c_str());
  if (!d) fail_errno("list threads of ", pid);
  while (auto* ent = ::readdir(d)) {
    if (ent->d_name[0] == '.') continue;
    out.push_back(std::atoi(ent->d_name));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// " (python3 -m http.server)": what a process runs, for messages naming it
// (its name where it has no command line: a zombie, a kernel thread).
std::string command_line(pid_t pid) {
  std::string raw;
  if (!try_read_file(cat("/proc/", pid, "/cmdline"), &raw) || raw.empty()) {
    if (!try_read_file(cat("/proc/", pid, "/comm"), &raw) || raw.empty()) return "";
    while (!raw.empty() && raw.back() == '\n') raw.pop_back();
    return cat(" (", raw, ")");
  }
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();
  std::replace(raw.begin(), raw.end(), '\0', ' ');
  constexpr size_t kShown = 80;
  if (raw.size() > kShown) raw = raw.substr(0, kShown) + "…";
  return cat(" (", raw, ")");
}

std::vector<pid_t> list_children(pid_t pid) {
  std::vector<pid_t> out;
  for (pid_t tid : list_threads(pid)) {
    std::string kids;
    if (!try_read_file(cat("/proc/", pid, "/task/", tid, "/children"), &kids)) continue;
    std::istringstream in(kids);
    for (pid_t kid; in >> kid;) out.push_back(kid);
  }
  return out;
}

std::map<std::string, std::string> read_status(const std::string& proc_dir) {
  std::map<std::string, std::string> out;
  std::istringstream in(read_file(proc_dir + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find(':');
    if (pos == std::string::npos) continue;
    out[line.substr(0, pos)] = trim(line.substr(pos + 1));
  }
  return out;
}

pid_t innermost_id(const std::string& ns_ids) {
  auto parts = split(trim(ns_ids), '\t');
  return parts.empty() ? 0 : std::atoi(parts.back().c_str());
}

uint64_t mem_available_bytes() {
  std::string text;
  if (!try_read_file("/proc/meminfo", &text)) return 0;
  auto pos = text.find("MemAvailable:");
  if (pos == std::string::npos) return 0;
  return std::strtoull(text.c_str() + pos + std::strlen("MemAvailable:"), nullptr, 10) * 1024;
}

namespace {

// Limit minus usage of the memory cgroup at `dir` and each one above it
// up to `root`; UINT64_MAX where none is limited.
uint64_t cgroup_headroom(const std::string& root, std::string path, const char* limit_file,
                         const char* usage_file) {
  uint64_t best = UINT64_MAX;
  for (;;) {
    std::string dir = root + (path == "/" ? "" : path), limit, usage;
    if (try_read_file(dir + "/" + limit_file, &limit) && try_read_file(dir + "/" + usage_file, &usage)) {
      char* end = nullptr;
      uint64_t l = std::strtoull(limit.c_str(), &end, 10);  // "max" (v2): no number, no limit
      if (end != limit.c_str()) {
        uint64_t u = std::strtoull(usage.c_str(), nullptr, 10);
        best = std::min(best, l > u ? l - u : 0);
      }
    }
    if (path.empty() || path == "/") return best;
    path = parent_cgroup(path);
  }
}

}  // namespace

std::vector<CgroupLine> read_cgroups(const std::string& pid) {
  std::vector<CgroupLine> out;
  std::string text;
  if (!try_read_file("/proc/" + pid + "/cgroup", &text)) return out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // "hierarchy-ID:controllers:path"; cgroup v2 has no controllers here
    auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    out.push_back({"," + line.substr(a + 1, b - a - 1) + ",", line.substr(b + 1)});
  }
  return out;
}

std::string parent_cgroup(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

uint64_t memory_headroom_bytes() {
  uint64_t best = mem_available_bytes();
  for (const auto& [controllers, path] : read_cgroups("self")) {
    if (controllers == ",,")
      best = std::min(best, cgroup_headroom("/sys/fs/cgroup", path, "memory.max", "memory.current"));
    else if (controllers.find(",memory,") != std::string::npos)
      best = std::min(best, cgroup_headroom("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes",
                                            "memory.usage_in_bytes"));
  }
  return best;
}

std::vector<std::string> read_stat_fields(pid_t pid) {
  std::string s = read_file(cat("/proc/", pid, "/stat"));
  auto close = s.rfind(')');
  if (close == std::string::npos) fail("parse /proc/", pid, "/stat");
  std::istringstream in(s.substr(close + 2));
  std::vector<std::string> out;
  std::string f;
  while (in >> f) out.push_back(f);
  return out;
}

std::string read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n < 0) fail_errno("readlink ", path);
  return std::string(buf, n);
}

std::map<std::string, std::string> read_fdinfo(pid_t pid, int fd, std::vector<std::string>* extra_lines) {
  std::map<std::string, std::string> out;
  std::istringstream in(read_file(cat("/proc/", pid, "/fdinfo/", fd)));
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find(':');
    // Lines like "tfd:        5 events: ..." or "inotify wd:3 ino:..." or
    // "lock:\t1: FLOCK ..."
    // repeat per entry: hand them back whole.
    std::string key = pos == std::string::npos ? "" : line.substr(0, pos);
    if (extra_lines && (key == "tfd" || key == "lock" || key.rfind("inotify ", 0) == 0 || key.rfind("fanotify ", 0) == 0)) {
      extra_lines->push_back(line);
      continue;
    }
    if (!key.empty()) out[key] = trim(line.substr(pos + 1));
  }
  return out;
}

}  // namespace thaw::proc
