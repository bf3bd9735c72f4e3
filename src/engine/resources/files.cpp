// The fd table: which fds exist, which of them share one open file
// description (kcmp), and the kind of each description. Kinds live in their
// own files (file_kinds.h); fds connected outside the process (a terminal,
// the other end of a pipe the caller holds) are "external" and get the
// restoring caller's fds instead.
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

using nlohmann::json;

std::string FdProbe::where() const { return cat("fd ", fd, " (", link, ")"); }

uint64_t FdProbe::info_number(const std::string& key, int base) const {
  auto it = info.find(key);
  if (it == info.end()) fail("fdinfo has no '", key, "' field");
  const std::string& s = it->second;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty())
    fail("fdinfo field '", key, "' is not a base-", base, " number: '", s, "'");
  return v;
}

bool link_is(const FdProbe& p, const char* prefix) { return p.link.rfind(prefix, 0) == 0; }

uint64_t link_inode(const std::string& link) {
  auto a = link.find('['), b = link.find(']');
  if (a == std::string::npos || b == std::string::npos || b < a) return 0;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(link.data() + a + 1, link.data() + b, v);
  return ec == std::errc() && end == link.data() + b ? v : 0;
}

json store_bytes(CheckpointContext& c, const std::string& data) {
  if (data.empty()) return json::object({{"len", 0}});
  return json(c.writer.append(0, data.data(), data.size()));
}

std::string load_bytes(RestoreContext& r, const json& j) {
  auto run = j.get<image::PageRun>();
  if (run.len == 0) return "";
  return r.read_run(run);
}

namespace {

// Runs fn with `context: ` in front of whatever it throws, library errors
// (json, std::stoi) included, so that no message arrives without its fd.
template <typename Fn>
auto in_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return with_context(context, fn);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(context, ": ", e.what());
  }
}

bool is_tty(const FdProbe& p) {
  if (!S_ISCHR(p.st.st_mode)) return false;
  unsigned maj = major(p.st.st_rdev);
  return maj == 4 || maj == 5 || (maj >= 136 && maj <= 143);
}

// Kinds refused by name, before any of them is looked at further: their
// state lives in the kernel where thaw cannot read it back (watches, rings,
// other processes' identities).
const char* unsupported_reason(const FdProbe& p) {
  if (link_is(p, "anon_inode:inotify")) return "inotify is not supported";
  if (link_is(p, "anon_inode:[fanotify]")) return "fanotify is not supported";
  if (link_is(p, "anon_inode:[io_uring]")) return "io_uring is not supported";
  if (link_is(p, "anon_inode:[userfaultfd]")) return "userfaultfd is not supported";
  if (link_is(p, "anon_inode:[pidfd]") || link_is(p, "pidfd:")) return "pidfds are not supported";
  if (link_is(p, "anon_inode:[perf_event]")) return "perf events are not supported";
  if (link_is(p, "anon_inode:bpf")) return "BPF objects are not supported";
  if (link_is(p, "anon_inode:kvm") || link_is(p, "anon_inode:[kvm")) return "KVM objects are not supported";
  if (link_is(p, "/dev/nvidia")) return "an open NVIDIA device needs the GPU checkpoint path";
  return nullptr;
}

json dump_external(const FdProbe& p) {
  json f{{"kind", "external"}, {"desc", p.link}};
  // Which end, for a checkpoint that drops outside connections (dropped.cpp).
  if (link_is(p, "pipe:")) f["pipe_end"] = (p.flags & O_ACCMODE) == O_RDONLY ? "r" : "w";
  return f;
}

// A pipe is ours when the process holds both ends; otherwise the other end
// belongs to someone outside.
bool external_pipe(const FdProbe& p, const std::vector<FdProbe>& all) {
  uint64_t ino = link_inode(p.link);
  int mode = p.flags & O_ACCMODE;
  for (const auto& o : all)
    if (&o != &p && link_is(o, "pipe:") && link_inode(o.link) == ino && (o.flags & O_ACCMODE) != mode) return false;
  return true;
}

// The inet kinds before kUnixSocket: the latter refuses every other socket.
const FileKind* const kKinds[] = {&kRegularFile, &kPipe, &kTcpListen, &kTcpClosed, &kUdp, &kUnixSocket, &kDropped, &kEventfd, &kEpoll, &kTimerfd, &kSignalfd};

std::vector<int> list_fds(pid_t pid) {
  std::string dir = cat("/proc/", pid, "/fd");
  DIR* d = ::opendir(dir.c_str());
  if (!d) fail_errno("list fds of ", pid);
  std::vector<int> fds;
  while (auto* ent = ::readdir(d))
    if (ent->d_name[0] != '.') fds.push_back(std::atoi(ent->d_name));
  ::closedir(d);
  std::sort(fds.begin(), fds.end());
  return fds;
}

FdProbe probe_fd(CheckpointContext& c, int fd) {
  FdProbe p;
  p.fd = fd;
  p.link = proc::read_link(cat("/proc/", c.pid, "/fd/", fd));
  in_context(p.where(), [&] {
    p.info = proc::read_fdinfo(c.pid, fd, &p.extra);
    int raw_flags = static_cast<int>(p.info_number("flags", 8));
    p.cloexec = (raw_flags & O_CLOEXEC) != 0;
    p.flags = raw_flags & ~O_CLOEXEC;
    p.dup.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, c.pidfd.get(), fd, 0)));
    if (!p.dup) fail_errno("cannot take a copy of the fd");
    if (::fstat(p.dup.get(), &p.st) != 0) fail_errno("stat");
  });
  return p;
}

json dump_description(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>& all) {
  return in_context(p.where(), [&] {
    if (const char* why = unsupported_reason(p)) fail(why);
    // fdinfo lists the locks this fd (flock, OFD) or this process (POSIX)
    // holds on the file. A restored process would not hold them again, and
    // another could take them: refuse rather than lose them.
    if (auto lock = p.info.find("lock"); lock != p.info.end())
      fail("it holds a file lock (", lock->second, "), which a restore would not take again; release it "
           "before the checkpoint");
    if (is_tty(p) || (link_is(p, "pipe:") && external_pipe(p, all))) return dump_external(p);
    const FileKind* kind = nullptr;
    for (const FileKind* k : kKinds)
      if (k->match(p)) {
        kind = k;
        break;
      }
    if (!kind) fail("this kind of file is not supported");
    json f = kind->dump(c, p, all);
    if (!f.contains("kind")) f["kind"] = kind->name;
    if (!f.contains("desc")) f["desc"] = p.link;
    return f;
  });
}

// An outside connection none of whose fds the restoring side gives becomes
// a dropped one (CheckpointContext::drop_outside).
void drop_outside_connections(CheckpointContext& c, const std::vector<FdProbe>& probes,
                              const std::vector<int>& desc_of) {
  for (size_t d = 0; d < c.m.files.size(); d++) {
    if (c.m.files[d]["kind"] != "external") continue;
    const FdProbe* first = nullptr;
    bool kept = false;
    for (size_t i = 0; i < probes.size(); i++) {
      if (desc_of[i] != static_cast<int>(d)) continue;
      if (!first) first = &probes[i];
      kept = kept || c.keep_outside.count(probes[i].fd) > 0;
    }
    if (kept || !first) continue;
    in_context(first->where(), [&] {
      c.m.files[d] = dropped_from_external(c.m.files[d], first->flags);
      // FIONREAD counts without reading (a pipe's bytes; a unix socket's, or
      // its next datagram's).
      int queued = 0;
      bool reads = c.m.files[d].value("pipe_end", std::string("r")) == "r";
      std::string lost = reads && ::ioctl(first->dup.get(), FIONREAD, &queued) == 0 && queued > 0
                             ? cat("; ", queued, " bytes queued for reading are lost with it")
                             : std::string();
      c.notes.push_back(cat(first->where(), ": ", dropped_what(c.m.files[d]), lost));
    });
  }
}

}  // namespace

namespace {

// Every fd of the target is held here as a copy (pidfd_getfd) while its
// files are read, so our own table must take them all besides what thaw
// holds already (a busy `thaw serve` holds many); short of that the
// checkpoint failed at some fd with a bare EMFILE. The soft limit is put
// back afterwards: thaw's children (a runtime's containers) inherit it, and
// snapshots record it.
constexpr rlim_t kMargin = 64;

class RoomForCopies {
 public:
  explicit RoomForCopies(size_t count) {
    const rlim_t need = count + list_fds(::getpid()).size() + kMargin;
    if (::getrlimit(RLIMIT_NOFILE, &old_) != 0 || old_.rlim_cur >= need) return;
    if (old_.rlim_max < need)
      fail("the process has ", count, " fds and thaw holds a copy of each while it checkpoints, but its "
           "open-files limit is ", old_.rlim_max, " (hard); raise it (ulimit -n ", need, ") and take the "
           "checkpoint again");
    rlimit raised{need, old_.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) fail_errno("raise the open-files limit to ", need);
    raised_ = need;
  }
  // Only if no other checkpoint (a runtime runs several) raised it since.
  ~RoomForCopies() {
    rlimit now{};
    if (raised_ && ::getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_cur == raised_) ::setrlimit(RLIMIT_NOFILE, &old_);
  }
  RoomForCopies(const RoomForCopies&) = delete;
  RoomForCopies& operator=(const RoomForCopies&) = delete;

 private:
  rlimit old_{};
  rlim_t raised_ = 0;
};

}  // namespace

void dump_files(CheckpointContext& c) {
  std::vector<int> fds = list_fds(c.pid);
  RoomForCopies room(fds.size());  // declared before the copies: outlives them
  std::vector<FdProbe> probes;
  for (int fd : fds) probes.push_back(probe_fd(c, fd));

  std::vector<int> desc_of(probes.size(), -1);
  for (size_t i = 0; i < probes.size(); i++) {
    FdProbe& p = probes[i];
    if (desc_of[i] < 0) {
      desc_of[i] = static_cast<int>(c.m.files.size());
      c.m.files.push_back(dump_description(c, p, probes));
      for (size_t j = i + 1; j < probes.size(); j++) {
        const FdProbe& q = probes[j];
        if (desc_of[j] >= 0 || q.st.st_dev != p.st.st_dev || q.st.st_ino != p.st.st_ino) continue;
        if (::syscall(SYS_kcmp, c.pid, c.pid, KCMP_FILE, p.fd, q.fd) == 0) desc_of[j] = desc_of[i];
      }
    }
    c.m.fds.push_back(json{{"fd", p.fd}, {"file", desc_of[i]}, {"cloexec", p.cloexec}});
  }
  if (c.drop_outside) drop_outside_connections(c, probes, desc_of);
}

namespace {

// The fd given for one of this external description's fds, which the others
// (dups of it) share; -1 if none is.
int given_for(const image::Manifest& m, size_t desc, const std::map<int, int>& inherit) {
  for (const auto& e : m.fds)
    if (e["file"].get<size_t>() == desc)
      if (auto it = inherit.find(e["fd"].get<int>()); it != inherit.end()) return it->second;
  return -1;
}

}  // namespace

std::map<int, int> with_shared_inherits(const image::Manifest& m, const std::map<int, int>& inherit) {
  std::map<int, int> all = inherit;
  for (const auto& e : m.fds) {
    size_t desc = e["file"].get<size_t>();
    if (m.files.at(desc)["kind"] != "external" || all.count(e["fd"].get<int>())) continue;
    if (int given = given_for(m, desc, inherit); given >= 0) all[e["fd"].get<int>()] = given;
  }
  return all;
}

void check_files(const image::Manifest& m, const std::map<int, int>& inherit) {
  for (const auto& e : m.fds) {
    int fd = e["fd"];
    size_t desc = e["file"].get<size_t>();
    const json& f = m.files.at(desc);
    if (f["kind"] == "external" && fd > 2 && given_for(m, desc, inherit) < 0)
      fail("fd ", fd, " (", f["desc"].get<std::string>(),
           ") was connected outside the process at checkpoint; pass --inherit-fd ", fd, "=<fd> to give it one");
  }
}

namespace {

const FileKind* kind_of(const json& f) {
  std::string name = f["kind"];
  for (const FileKind* k : kKinds)
    if (name == k->name) return k;
  fail("image: unknown file kind '", name, "'");
}

// "fds 3, 7 (pipe:[123])": how errors name a description at restore.
std::string describe(const json& f, const std::vector<const json*>& fds) {
  std::string s = fds.size() == 1 ? "fd " : "fds ";
  for (size_t i = 0; i < fds.size(); i++) s += cat(i ? ", " : "", (*fds[i])["fd"].get<int>());
  return cat(s, " (", f.value("desc", f.value("path", f["kind"].get<std::string>())), ")");
}

void install(RestoreFiles& rf, const json& e, int src) {
  int target = e["fd"];
  if (::dup3(src, target, e.value("cloexec", false) ? O_CLOEXEC : 0) < 0) fail_errno("install fd ", target);
  rf.installed.insert(target);
}

bool ready(const FileKind* k, const json& f, const RestoreFiles& rf) {
  if (!k->waits_for) return true;
  auto deps = k->waits_for(f);
  return std::all_of(deps.begin(), deps.end(), [&](int fd) { return rf.installed.count(fd) > 0; });
}

}  // namespace

void close_all_except(const std::vector<int>& keep) {
  std::vector<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) fail_errno("list own fds");
  int dfd = ::dirfd(d);
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != dfd && std::find(keep.begin(), keep.end(), fd) == keep.end()) fds.push_back(fd);
  }
  ::closedir(d);
  for (int fd : fds) ::close(fd);
}

// Room above the image's highest fd for files being opened before they
// are installed at their numbers.
constexpr rlim_t kOpenHeadroom = 64;

std::vector<int> prepare_fd_table(RestoreContext& r, const std::vector<int*>& keep) {
  int max_fd = 2;
  for (const auto& e : r.m.fds) max_fd = std::max(max_fd, e["fd"].get<int>());
  // Our fds are parked above the image's highest and the files are opened
  // there before they go to their numbers, so the table must reach past it
  // (a restore run under a lower `ulimit -n` than the process had would
  // fail at the first park with a bare EINVAL).
  // Without the headroom only our parked fds must fit (how restores near
  // the hard limit went before it was checked); with it, files opened at
  // once do too.
  const rlim_t minimal = rlim_t(max_fd) + 1 + keep.size() + r.inherit.size();
  const rlim_t need = minimal + kOpenHeadroom;
  struct rlimit nofile;
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  if (nofile.rlim_max < need) {
    struct rlimit raised{need, need};
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {  // no CAP_SYS_RESOURCE: what the hard limit allows
      if (nofile.rlim_max < minimal)
        fail("the image has fd ", max_fd, " but this restore's open-files limit is ", nofile.rlim_max,
             " (hard); it needs ", need, ": raise it (ulimit -n ", need, ") and restore again");
      nofile.rlim_cur = nofile.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &nofile);
    }
  } else {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  r.spare_fd_base = max_fd + 1;
  std::vector<int> kept;
  for (int* fd : keep) {
    *fd = r.park_fd(*fd);
    kept.push_back(*fd);
  }
  for (auto& [target, src] : r.inherit) {
    src = r.park_fd(::fcntl(src, F_DUPFD_CLOEXEC, r.spare_fd_base));
    kept.push_back(src);
  }
  close_all_except(kept);
  std::vector<int> fillers;
  for (int fd = 0; fd < r.spare_fd_base; fd++) {
    int n = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (n < 0) fail_errno("open /dev/null");
    if (n != fd && ::dup3(n, fd, O_CLOEXEC) < 0) fail_errno("reserve fd ", fd);
    if (n != fd) ::close(n);
    fillers.push_back(fd);
  }
  return fillers;
}

void finish_fd_table(RestoreContext& r, const std::vector<int>& fillers) {
  for (auto& [target, src] : r.inherit) ::close(src);
  for (int fd : fillers)
    if (std::none_of(r.m.fds.begin(), r.m.fds.end(), [&](const json& e) { return e["fd"].get<int>() == fd; }))
      ::close(fd);
}

void restore_files(RestoreContext& r) {
  RestoreFiles rf;
  std::vector<std::vector<const json*>> fds_of(r.m.files.size());
  for (const auto& e : r.m.fds) fds_of.at(e["file"].get<size_t>()).push_back(&e);

  std::vector<size_t> todo;
  for (size_t i = 0; i < r.m.files.size(); i++) {
    const json& f = r.m.files[i];
    if (f["kind"] != "external") {
      todo.push_back(i);
      continue;
    }
    // One given fd serves the description's other fds: they were dups of it.
    int shared = given_for(r.m, i, r.inherit);
    for (const json* e : fds_of[i]) {
      auto it = r.inherit.find((*e)["fd"].get<int>());
      int src = it != r.inherit.end() ? it->second : shared;
      if (src < 0) fail(describe(f, {e}), ": nothing to inherit for it");
      in_context(describe(f, {e}), [&] { install(rf, *e, src); });
    }
  }
  // Each description is opened and installed at once, so that a kind that
  // names other fds (epoll) finds them in place; those wait for a later round.
  while (!todo.empty()) {
    std::vector<size_t> later;
    for (size_t i : todo) {
      const json& f = r.m.files[i];
      in_context(describe(f, fds_of[i]), [&] {
        const FileKind* k = kind_of(f);
        if (!ready(k, f, rf)) {
          later.push_back(i);
          return;
        }
        UniqueFd fd(r.park_fd(k->open(r, rf, f)));
        for (const json* e : fds_of[i]) install(rf, *e, fd.get());
      });
    }
    if (later.size() == todo.size())
      fail(describe(r.m.files[later[0]], fds_of[later[0]]), ": waits for fds that never get a file");
    todo = std::move(later);
  }
}

}  // namespace thaw::engine
