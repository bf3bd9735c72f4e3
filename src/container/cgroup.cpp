#include "container/cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "container/fsutil.h"

namespace thaw::container {

namespace {

// 0, or the errno of the failed open or write.
int write_small(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno;
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) return errno ? errno : EIO;
  return 0;
}

// A directory we may create a child group in: a mounted hierarchy root.
bool hierarchy(const std::string& dir) { return exists(dir + "/cgroup.procs"); }

std::string mib(uint64_t bytes) { return cat(bytes >> 20, " MiB"); }

// The words of a one-line cgroup file (cgroup.controllers, cgroup.subtree_control).
bool lists(const std::string& file, const std::string& word) {
  std::string text;
  if (!try_read_file(file, &text)) return false;
  std::istringstream in(text);
  for (std::string w; in >> w;)
    if (w == word) return true;
  return false;
}

// "key N" lines (memory.events, memory.oom_control): N of key, or 0.
uint64_t counter(const std::string& file, const std::string& key) {
  std::string text;
  if (!try_read_file(file, &text)) return 0;
  std::istringstream in(text);
  for (std::string k; in >> k;) {
    uint64_t v = 0;
    if (!(in >> v)) break;
    if (k == key) return v;
  }
  return 0;
}

// On cgroup v2 a group's controllers are those its parent delegates: enables
// `ctrl` for the children of `parent` (and of root above it). "" or why not.
std::string delegate_v2(const std::string& root, const std::string& parent, const std::string& ctrl) {
  if (!lists(root + "/cgroup.controllers", ctrl))
    return cat("this host's cgroup v2 hierarchy has no ", ctrl, " controller (", root,
               "/cgroup.controllers does not list it; on cgroup v1 hosts it must not be bound to a v1 hierarchy)");
  for (const auto& dir : {root, parent}) {
    if (lists(dir + "/cgroup.subtree_control", ctrl)) continue;
    if (int err = write_small(dir + "/cgroup.subtree_control", "+" + ctrl))
      return cat("could not enable the ", ctrl, " controller in ", dir, "/cgroup.subtree_control: ", std::strerror(err));
  }
  return "";
}

}  // namespace

Cgroup Cgroup::create(const std::string& id, uint64_t memory_limit_bytes, double cpu_limit, const std::string& root) {
  Cgroup cg;
  constexpr long kPeriodUs = 100000;
  long quota = static_cast<long>(cpu_limit * kPeriodUs);
  std::string mem_warning = "no memory cgroup this runtime can create groups in";
  std::string cpu_warning = "no cpu cgroup this runtime can create groups in";

  std::vector<std::pair<std::string, std::string>> groups;  // (hierarchy, controller)
  for (const char* ctrl : {"memory", "freezer", "cpu"}) {
    if (std::string(ctrl) == "cpu" && cpu_limit <= 0) continue;
    if (hierarchy(cat(root, "/", ctrl))) groups.emplace_back(cat(root, "/", ctrl), ctrl);
  }
  if (groups.empty() && exists(cat(root, "/cgroup.controllers"))) groups.emplace_back(root, "v2");

  for (const auto& [hier, ctrl] : groups) {
    std::string dir = cat(hier, "/thaw/", id);
    bool v2 = ctrl == "v2";
    std::string mem_why, cpu_why;
    if (v2) {
      try {
        mkdir_p(hier + "/thaw");
      } catch (const std::exception&) {
        continue;  // read-only or not delegated to us: run without it
      }
      mem_why = delegate_v2(hier, hier + "/thaw", "memory");
      if (cpu_limit > 0) cpu_why = delegate_v2(hier, hier + "/thaw", "cpu");
    }
    try {
      mkdir_p(dir);
    } catch (const std::exception&) {
      continue;  // as above
    }
    cg.dirs_.push_back(dir);
    if (ctrl == "memory" || (v2 && mem_why.empty())) {
      cg.memory_dir_ = dir;
      cg.memory_v2_ = v2;
    }
    if (ctrl == "memory" || v2) {
      mem_warning = mem_why;
      if (memory_limit_bytes && mem_why.empty()) {
        const char* file = v2 ? "/memory.max" : "/memory.limit_in_bytes";
        if (int err = write_small(dir + file, std::to_string(memory_limit_bytes)))
          mem_warning = cat("writing ", dir, file, ": ", std::strerror(err));
        else
          cg.memory_limit_ = memory_limit_bytes;
      }
    }
    if (cpu_limit > 0 && (ctrl == "cpu" || v2)) {
      cpu_warning = cpu_why;
      if (cpu_why.empty()) {
        int err = v2 ? write_small(dir + "/cpu.max", cat(quota, " ", kPeriodUs))
                     : write_small(dir + "/cpu.cfs_period_us", std::to_string(kPeriodUs));
        if (!err && !v2) err = write_small(dir + "/cpu.cfs_quota_us", std::to_string(quota));
        if (err) cpu_warning = cat("writing the CPU quota in ", dir, ": ", std::strerror(err));
      }
    }
  }
  if (memory_limit_bytes && !cg.memory_limit_)
    cg.warnings_.push_back(cat("the memory limit of ", mib(memory_limit_bytes), " is not applied: ", mem_warning));
  if (cpu_limit > 0 && !cpu_warning.empty())
    cg.warnings_.push_back(cat("the CPU limit of ", cpu_limit, " cores is not applied: ", cpu_warning));
  return cg;
}

Cgroup& Cgroup::operator=(Cgroup&& o) noexcept {
  if (this != &o) {
    remove();
    dirs_ = std::move(o.dirs_);
    warnings_ = std::move(o.warnings_);
    memory_dir_ = std::move(o.memory_dir_);
    memory_v2_ = o.memory_v2_;
    memory_limit_ = o.memory_limit_;
    o.dirs_.clear();
    o.memory_dir_.clear();
  }
  return *this;
}

Cgroup::~Cgroup() { remove(); }

uint64_t Cgroup::oom_kills() const {
  if (memory_dir_.empty()) return 0;
  return memory_v2_ ? counter(memory_dir_ + "/memory.events", "oom_kill")
                    : counter(memory_dir_ + "/memory.oom_control", "oom_kill");
}

void Cgroup::remove() {
  for (const auto& d : dirs_) {
    // The last process may still be exiting: the group is busy until the
    // kernel has released it.
    for (int i = 0; i < 50 && ::rmdir(d.c_str()) != 0 && errno == EBUSY; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  dirs_.clear();
}

size_t sweep_stale_cgroups(std::chrono::seconds min_age, const std::string& root) {
  size_t removed = 0;
  time_t now = ::time(nullptr);
  for (const std::string& parent : {cat(root, "/memory/thaw"), cat(root, "/freezer/thaw"), cat(root, "/cpu/thaw"),
                                    cat(root, "/thaw")}) {
    try {
      for (const auto& name : list_dir(parent)) {
        std::string dir = cat(parent, "/", name);
        struct stat st;
        if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || now - st.st_mtime < min_age.count()) continue;
        std::string procs;
        if (!try_read_file(dir + "/cgroup.procs", &procs) || !procs.empty()) continue;
        if (::rmdir(dir.c_str()) == 0) removed++;
      }
    } catch (const std::exception&) {
      // Not listable here: nothing to sweep.
    }
  }
  return removed;
}

void join_cgroups(const std::vector<std::string>& dirs) { add_to_cgroups(0, dirs); }

void add_to_cgroups(pid_t pid, const std::vector<std::string>& dirs) {
  for (const auto& d : dirs)
    if (int err = write_small(d + "/cgroup.procs", std::to_string(pid)))
      std::fprintf(stderr, "thaw: could not join cgroup %s: %s (continuing without it)\n", d.c_str(),
                   std::strerror(err));
}

}  // namespace thaw::container
