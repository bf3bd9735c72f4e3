// The fd table: which fds exist, which of them share one open file
// description (kcmp), and the kind of each description. Kinds live in their
// own files (file_kinds.h); fds connected outside the process (a terminal,
// the other end of a pipe the caller holds) are "external" and get the
// restoring caller's fds instead.
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

using nlohmann::json;

std::string FdProbe::where() const { return cat("fd ", fd, " (", link, ")"); }

bool link_is(const FdProbe& p, const char* prefix) { return p.link.rfind(prefix, 0) == 0; }

uint64_t link_inode(const std::string& link) {
  auto a = link.find('['), b = link.find(']');
  if (a == std::string::npos || b == std::string::npos) return 0;
  return std::stoull(link.substr(a + 1, b - a - 1));
}

json store_bytes(CheckpointContext& c, const std::string& data) {
  if (data.empty()) return json::object({{"len", 0}});
  return json(c.writer.append(0, data.data(), data.size()));
}

std::string load_bytes(RestoreContext& r, const json& j) {
  if (j.value("len", uint64_t{0}) == 0) return "";
  return r.read_run(j.get<image::PageRun>());
}

namespace {

bool is_tty(const FdProbe& p) {
  if (!S_ISCHR(p.st.st_mode)) return false;
  unsigned maj = major(p.st.st_rdev);
  return maj == 4 || maj == 5 || (maj >= 136 && maj <= 143);
}

const char* unsupported_reason(const FdProbe& p) {
  if (link_is(p, "anon_inode:inotify")) return "inotify is not supported";
  if (link_is(p, "anon_inode:[fanotify]")) return "fanotify is not supported";
  if (link_is(p, "anon_inode:[io_uring]")) return "io_uring is not supported";
  if (link_is(p, "anon_inode:[userfaultfd]")) return "userfaultfd is not supported";
  if (link_is(p, "anon_inode:[pidfd]")) return "pidfds are not supported";
  if (link_is(p, "anon_inode:[perf_event]")) return "perf events are not supported";
  if (link_is(p, "anon_inode:bpf")) return "BPF objects are not supported";
  if (link_is(p, "/dev/nvidia")) return "an open NVIDIA device needs the GPU checkpoint path";
  return nullptr;
}

json dump_external(const FdProbe& p) { return json{{"kind", "external"}, {"desc", p.link}}; }

bool external_pipe(const FdProbe& p, const std::vector<FdProbe>& all) {
  uint64_t ino = link_inode(p.link);
  int mode = p.flags & O_ACCMODE;
  for (const auto& o : all)
    if (&o != &p && link_inode(o.link) == ino && link_is(o, "pipe:") && (o.flags & O_ACCMODE) != mode)
      return false;
  return true;
}

const FileKind* const kKinds[] = {&kRegularFile, &kPipe, &kUnixSocket, &kEventfd, &kEpoll, &kTimerfd, &kSignalfd};

}  // namespace

void dump_files(CheckpointContext& c) {
  std::vector<FdProbe> probes;
  std::string dir = cat("/proc/", c.pid, "/fd");
  DIR* d = ::opendir(dir.c_str());
  if (!d) fail_errno("list fds of ", c.pid);
  std::vector<int> fds;
  while (auto* ent = ::readdir(d))
    if (ent->d_name[0] != '.') fds.push_back(std::atoi(ent->d_name));
  ::closedir(d);
  std::sort(fds.begin(), fds.end());

  for (int fd : fds) {
    FdProbe p;
    p.fd = fd;
    p.link = proc::read_link(cat(dir, "/", fd));
    p.info = proc::read_fdinfo(c.pid, fd, &p.extra);
    int raw_flags = static_cast<int>(std::stoul(p.info["flags"], nullptr, 8));
    p.flags = raw_flags & ~O_CLOEXEC;
    p.dup.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, c.pidfd.get(), fd, 0)));
    if (!p.dup) fail_errno(p.where(), ": cannot take a copy of the fd");
    if (::fstat(p.dup.get(), &p.st) != 0) fail_errno(p.where(), ": stat");
    probes.push_back(std::move(p));
  }

  std::vector<int> desc_of(probes.size(), -1);
  for (size_t i = 0; i < probes.size(); i++) {
    FdProbe& p = probes[i];
    if (desc_of[i] < 0) {
      if (const char* why = unsupported_reason(p)) fail(p.where(), ": ", why);
      json f;
      if (is_tty(p) || (link_is(p, "pipe:") && external_pipe(p, probes))) {
        f = dump_external(p);
      } else {
        const FileKind* kind = nullptr;
        for (const FileKind* k : kKinds)
          if (k->match(p)) {
            kind = k;
            break;
          }
        if (!kind) fail(p.where(), ": this kind of file is not supported");
        f = with_context(p.where(), [&] { return kind->dump(c, p, probes); });
        if (!f.contains("kind")) f["kind"] = kind->name;
      }
      desc_of[i] = static_cast<int>(c.m.files.size());
      c.m.files.push_back(std::move(f));
      for (size_t j = i + 1; j < probes.size(); j++) {
        const FdProbe& q = probes[j];
        if (desc_of[j] >= 0 || q.st.st_dev != p.st.st_dev || q.st.st_ino != p.st.st_ino) continue;
        if (::syscall(SYS_kcmp, c.pid, c.pid, KCMP_FILE, p.fd, q.fd) == 0) desc_of[j] = desc_of[i];
      }
    }
    int raw = static_cast<int>(std::stoul(p.info["flags"], nullptr, 8));
    c.m.fds.push_back(json{{"fd", p.fd}, {"file", desc_of[i]}, {"cloexec", (raw & O_CLOEXEC) != 0}});
  }
}

void check_files(const image::Manifest& m, const std::map<int, int>& inherit) {
  for (const auto& e : m.fds) {
    int fd = e["fd"];
    const json& f = m.files.at(e["file"].get<size_t>());
    if (f["kind"] == "external" && fd > 2 && !inherit.count(fd))
      fail("fd ", fd, " (", f["desc"].get<std::string>(),
           ") was connected outside the process at checkpoint; pass --inherit-fd ", fd, "=<fd> to give it one");
  }
}

void restore_files(RestoreContext& r) {
  RestoreFiles rf;
  auto kind_of = [&](const json& f) -> const FileKind* {
    std::string name = f["kind"];
    for (const FileKind* k : kKinds)
      if (name == k->name) return k;
    fail("image: unknown file kind '", name, "'");
  };
  auto install = [&](const json& e, int src) {
    int target = e["fd"];
    if (::dup3(src, target, e.value("cloexec", false) ? O_CLOEXEC : 0) < 0 && src != target)
      fail_errno("install fd ", target);
    if (src == target && !e.value("cloexec", false)) ::fcntl(target, F_SETFD, 0);
    rf.installed[target] = target;
  };
  std::vector<UniqueFd> opened(r.m.files.size());
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < r.m.files.size(); i++) {
      const json& f = r.m.files[i];
      if (f["kind"] == "external") continue;
      const FileKind* k = kind_of(f);
      if (k->late != (pass == 1)) continue;
      opened[i].reset(r.park_fd(k->open(r, rf, f)));
    }
    for (const auto& e : r.m.fds) {
      size_t idx = e["file"];
      const json& f = r.m.files.at(idx);
      int target = e["fd"];
      if (f["kind"] == "external") {
        if (pass == 1) continue;
        auto it = r.inherit.find(target);
        if (it == r.inherit.end()) fail("fd ", target, ": nothing to inherit for it");
        install(e, it->second);
        continue;
      }
      if (kind_of(f)->late != (pass == 1)) continue;
      install(e, opened[idx].get());
    }
  }
}

}  // namespace thaw::engine
