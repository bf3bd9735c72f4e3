#include "proc/procfs.h"

#include <dirent.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "common/io.h"

namespace thaw::proc {

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

uint64_t mem_available_bytes() {
  std::string text;
  if (!try_read_file("/proc/meminfo", &text)) return 0;
  auto pos = text.find("MemAvailable:");
  if (pos == std::string::npos) return 0;
  return std::strtoull(text.c_str() + pos + std::strlen("MemAvailable:"), nullptr, 10) * 1024;
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
    // Lines like "tfd:        5 events: ..." repeat per entry: hand them back whole.
    std::string key = pos == std::string::npos ? "" : line.substr(0, pos);
    if (extra_lines && (key == "tfd" || key == "inotify" || key == "fanotify")) {
      extra_lines->push_back(line);
      continue;
    }
    if (!key.empty()) out[key] = trim(line.substr(pos + 1));
  }
  return out;
}

}  // namespace thaw::proc
