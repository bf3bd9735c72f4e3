// The fd table: which fds exist, which of them share one open file
// description (kcmp), and the kind of each description. Kinds live in their
// own files (file_kinds.h); fds connected outside the process (a terminal,
// the other end of a pipe the caller holds) are "external" and get the
// restoring caller's fds instead.
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <set>
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
// counters, programs).
const char* unsupported_reason(const FdProbe& p) {
  if (link_is(p, "anon_inode:[fanotify]")) return "fanotify is not supported";
  if (link_is(p, "anon_inode:[io_uring]")) return "io_uring is not supported";
  if (link_is(p, "anon_inode:[userfaultfd]")) return "userfaultfd is not supported";
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

// A pipe is ours when the process (or its tree) holds both ends, or holds
// one end and nobody the other: a read end whose writers all closed (poll
// says POLLHUP), a write end whose readers did (POLLERR), as a pool worker
// keeps the pipe its parent sent its setup through. The pipe kind restores
// such an end with its data and the other end closed. Otherwise the other
// end belongs to someone outside. (fds 0-2 stay external all the same: a
// restore gives the process its caller's stdio for them.)
bool external_pipe(const FdProbe& p, const std::vector<FdProbe>& all) {
  uint64_t ino = link_inode(p.link);
  int mode = p.flags & O_ACCMODE;
  for (const auto& o : all)
    if (&o != &p && link_is(o, "pipe:") && link_inode(o.link) == ino && (o.flags & O_ACCMODE) != mode) return false;
  if (p.fd <= 2) return true;
  // thaw's copies are only of the tree's fds, none of them the other end.
  pollfd pf{p.dup.get(), 0, 0};
  if (::poll(&pf, 1, 0) == 1 && (pf.revents & (mode == O_RDONLY ? POLLHUP : POLLERR))) return false;
  return true;
}

// The inet kinds before kUnixSocket: the latter refuses every other socket.
const FileKind* const kKinds[] = {&kRegularFile, &kPipe, &kTcpListen, &kTcpClosed, &kUdp, &kUnixSocket, &kDropped, &kEventfd, &kEpoll, &kTimerfd, &kSignalfd, &kInotify, &kPidfd};

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
  p.pid = c.pid;
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
    if (is_tty(p) || (link_is(p, "pipe:") && external_pipe(p, all))) {
      description_locks(p, false);  // fails for any: the restoring side gives the fd
      return dump_external(p);
    }
    const FileKind* kind = nullptr;
    for (const FileKind* k : kKinds)
      if (k->match(p)) {
        kind = k;
        break;
      }
    if (!kind) fail("this kind of file is not supported");
    json locks = description_locks(p, kind == &kRegularFile);
    json f = kind->dump(c, p, all);
    if (!f.contains("kind")) f["kind"] = kind->name;
    if (!f.contains("desc")) f["desc"] = p.link;
    if (!locks.empty()) f["locks"] = locks;
    return f;
  });
}

// An outside connection none of whose fds the restoring side gives becomes
// a dropped one (CheckpointContext::drop_outside). `entries` are
// descriptions (a process's files, or the tree's pool), desc_of[i] the one
// probes[i] refers to; notes go to c and name any process but `root`.
void drop_outside_connections(CheckpointContext& c, json& entries, const std::vector<const FdProbe*>& probes,
                              const std::vector<int>& desc_of, const std::function<bool(const FdProbe&)>& kept_fd,
                              pid_t root) {
  for (size_t d = 0; d < entries.size(); d++) {
    if (entries[d]["kind"] != "external") continue;
    const FdProbe* first = nullptr;
    bool kept = false;
    for (size_t i = 0; i < probes.size(); i++) {
      if (desc_of[i] != static_cast<int>(d)) continue;
      if (!first) first = probes[i];
      kept = kept || kept_fd(*probes[i]);
    }
    if (kept || !first) continue;
    std::string who = first->pid == root ? std::string() : cat("child process ", first->pid, ": ");
    in_context(who + first->where(), [&] {
      entries[d] = dropped_from_external(entries[d], first->flags);
      // FIONREAD counts without reading (a pipe's bytes; a unix socket's, or
      // its next datagram's).
      int queued = 0;
      bool reads = entries[d].value("pipe_end", std::string("r")) == "r";
      std::string lost = reads && ::ioctl(first->dup.get(), FIONREAD, &queued) == 0 && queued > 0
                             ? cat("; ", queued, " bytes queued for reading are lost with it")
                             : std::string();
      c.notes.push_back(cat(who, first->where(), ": ", dropped_what(entries[d]), lost));
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

namespace {

// One open file description of the tree: its fds (indexes into the tree's
// probes) and the processes holding them.
struct Description {
  std::vector<size_t> probes;
  std::set<size_t> members;
  nlohmann::json f;
};

// Whether a description must be opened once for the whole tree (pooled):
// fds of several processes refer to it, or it is one end of a pipe or
// socket pair another process holds the other end of; or, in a tree, it is
// a unix socket whose file was removed. Such a socket binds its name again
// and removes the file, which must come before a socket bound at that path
// since binds it (name_freed_first); but the pool is opened first, by the
// root before its children exist, and the processes then open their own
// files at once: one the process held alone found the pool's socket file
// (or a sibling's) in the way, and the restore was refused (Address
// already in use). In the pool it comes first. (One connected to a peer
// stays with the peer's, which it is paired with.)
std::vector<bool> pooled_descriptions(const std::vector<Description>& ds, const std::vector<FdProbe>& all,
                                      size_t processes) {
  std::map<uint64_t, std::set<size_t>> pipe_members, socket_member;  // by inode
  for (const auto& d : ds) {
    const FdProbe& p = all[d.probes[0]];
    if (d.f["kind"] == "pipe") pipe_members[d.f["ino"].get<uint64_t>()].insert(d.members.begin(), d.members.end());
    if (link_is(p, "socket:")) socket_member[link_inode(p.link)].insert(d.members.begin(), d.members.end());
  }
  std::vector<bool> pooled(ds.size());
  for (size_t i = 0; i < ds.size(); i++) {
    const auto& d = ds[i];
    bool cross = d.members.size() > 1;
    if (d.f["kind"] == "pipe") cross = cross || pipe_members[d.f["ino"].get<uint64_t>()].size() > 1;
    if (d.f.contains("peer") && d.f["peer"].is_number_unsigned()) {
      auto it = socket_member.find(d.f["peer"].get<uint64_t>());
      if (it != socket_member.end() && (it->second.size() > 1 || it->second != d.members)) cross = true;
    }
    bool connected = d.f.contains("peer") && d.f["peer"].is_number_unsigned();
    if (processes > 1 && d.f["kind"] == "unix" && d.f.contains("bound") && d.f["bound"].value("unlinked", false) &&
        !connected)
      cross = true;
    // A pidfd holds no state worth sharing, and the root opens the pool
    // before the processes it may name exist: each process opens its own.
    pooled[i] = cross && d.f["kind"] != "pidfd";
  }
  return pooled;
}

// For each probe, the first probe (by index) of the same open file
// description. Only fds of one file can share one; among those kcmp orders
// descriptions, so each such group is sorted (n log n calls: 10 000 opens
// of /dev/null took 25 s pairwise). Where it cannot order them, pairs.
std::vector<size_t> same_descriptions(const std::vector<FdProbe>& all) {
  std::vector<size_t> first(all.size());
  for (size_t i = 0; i < all.size(); i++) first[i] = i;
  std::map<std::pair<dev_t, ino_t>, std::vector<size_t>> files;
  for (size_t i = 0; i < all.size(); i++) files[{all[i].st.st_dev, all[i].st.st_ino}].push_back(i);
  auto kcmp = [&](size_t a, size_t b) {
    return ::syscall(SYS_kcmp, all[a].pid, all[b].pid, KCMP_FILE, all[a].fd, all[b].fd);
  };
  for (auto& [file, group] : files) {
    if (group.size() < 2) continue;
    // A comparison kcmp cannot order stops the sort (an inconsistent
    // comparator would make it undefined), and the group is paired instead.
    struct Unordered {};
    bool ordered = true;
    std::vector<size_t> sorted = group;
    try {
      std::sort(sorted.begin(), sorted.end(), [&](size_t a, size_t b) {
        long r = kcmp(a, b);
        if (r < 0 || r == 3) throw Unordered{};
        return r == 1;
      });
    } catch (const Unordered&) {
      ordered = false;
    }
    if (ordered) {
      for (size_t k = 0; k < sorted.size();) {
        size_t end = k + 1, low = sorted[k];
        while (end < sorted.size() && kcmp(sorted[k], sorted[end]) == 0) low = std::min(low, sorted[end++]);
        for (size_t x = k; x < end; x++) first[sorted[x]] = low;
        k = end;
      }
      continue;
    }
    for (size_t x = 0; x < group.size(); x++)  // group is in index order
      for (size_t y = 0; y < x; y++)
        if (first[group[y]] == group[y] && kcmp(group[y], group[x]) == 0) {
          first[group[x]] = group[y];
          break;
        }
  }
  return first;
}

}  // namespace

void dump_files(const std::vector<CheckpointContext*>& tree) {
  std::map<pid_t, pid_t> pids;
  for (auto* c : tree) pids[c->pid] = restore_pid(c->m);
  for (auto* c : tree) c->tree_pids = pids;
  std::vector<std::vector<int>> fds;
  size_t count = 0;
  for (auto* c : tree) {
    fds.push_back(list_fds(c->pid));
    count += fds.back().size();
  }
  RoomForCopies room(count);  // declared before the copies: outlives them
  std::vector<FdProbe> all;
  std::vector<size_t> member_of;
  for (size_t i = 0; i < tree.size(); i++)
    for (int fd : fds[i]) {
      all.push_back(probe_fd(*tree[i], fd));
      member_of.push_back(i);
    }

  // Descriptions: fds (of any process of the tree) that kcmp finds to be
  // one struct file.
  std::vector<size_t> first = same_descriptions(all);
  std::vector<Description> ds;
  std::vector<int> desc_of(all.size(), -1);
  for (size_t i = 0; i < all.size(); i++) {
    if (first[i] != i) {  // a dup (or inherited copy) of an earlier fd's
      Description& d = ds[desc_of[i] = desc_of[first[i]]];
      d.probes.push_back(i);
      d.members.insert(member_of[i]);
      continue;
    }
    desc_of[i] = static_cast<int>(ds.size());
    Description d;
    d.probes.push_back(i);
    d.members.insert(member_of[i]);
    CheckpointContext& c = *tree[member_of[i]];
    with_context(c.who, [&] {
      d.f = dump_description(c, all[i], all);
    });
    ds.push_back(std::move(d));
  }
  std::vector<bool> pooled = pooled_descriptions(ds, all, tree.size());
  // Each process's own descriptions, in its manifest; the shared ones in
  // the root's pool.
  std::vector<int> index(ds.size(), -1);
  for (size_t d = 0; d < ds.size(); d++) {
    const FdProbe& p = all[ds[d].probes[0]];
    if (pooled[d]) {
      if (ds[d].f["kind"] == "epoll")
        fail(p.where(), " of process ", p.pid, ": an epoll instance shared by several processes is not supported");
      index[d] = static_cast<int>(tree[0]->m.pool.size());
      tree[0]->m.pool.push_back(ds[d].f);
    }
  }
  pid_t root = tree[0]->pid;
  for (size_t i = 0; i < tree.size(); i++) {
    CheckpointContext& c = *tree[i];
    std::vector<int> own(ds.size(), -1);  // description -> index in c.m.files
    std::vector<const FdProbe*> probes;
    std::vector<int> own_desc;
    for (size_t k = 0; k < all.size(); k++) {
      if (member_of[k] != i) continue;
      size_t d = static_cast<size_t>(desc_of[k]);
      json entry{{"fd", all[k].fd}, {"file", own[d]}, {"cloexec", all[k].cloexec}};
      if (own[d] < 0) {
        own[d] = static_cast<int>(c.m.files.size());
        entry["file"] = own[d];
        c.m.files.push_back(pooled[d] ? json{{"kind", "pooled"}, {"pool", index[d]}, {"desc", all[k].link}} : ds[d].f);
        // This process's POSIX locks taken through the description: its
        // other fds of it (dups) list the same.
        json locks = with_context(c.who, [&] {
          return in_context(all[k].where(), [&] { return fd_posix_locks(all[k], ds[d].f["kind"] == "file"); });
        });
        if (!locks.empty()) entry["posix_locks"] = locks;
      }
      c.m.fds.push_back(entry);
      probes.push_back(&all[k]);
      own_desc.push_back(own[d]);
    }
    if (c.drop_outside)
      drop_outside_connections(c, c.m.files, probes, own_desc,
                               [&](const FdProbe& p) { return c.keep_outside.count(p.fd) > 0; }, root);
  }
  // A shared outside connection is the restoring side's to give when one of
  // the root's fds for it is kept (a child's are never given).
  CheckpointContext& rc = *tree[0];
  if (rc.drop_outside && !rc.m.pool.empty()) {
    std::vector<const FdProbe*> probes;
    std::vector<int> pool_of;
    for (size_t k = 0; k < all.size(); k++)
      if (pooled[desc_of[k]]) {
        probes.push_back(&all[k]);
        pool_of.push_back(index[desc_of[k]]);
      }
    drop_outside_connections(rc, rc.m.pool, probes, pool_of,
                             [&](const FdProbe& p) { return p.pid == root && rc.keep_outside.count(p.fd) > 0; }, root);
  }
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
  for (size_t k = 0; k < m.pool.size(); k++) {
    if (m.pool[k]["kind"] != "external") continue;
    bool given = false;
    int root_fd = -1;
    for (const auto& e : m.fds) {
      const json& own = m.files.at(e["file"].get<size_t>());
      if (own["kind"] != "pooled" || own["pool"] != k) continue;
      root_fd = e["fd"];
      given = given || inherit.count(root_fd) > 0;
    }
    if (given) continue;
    if (root_fd < 0)
      fail("fds of child processes (", m.pool[k].value("desc", ""), ") were connected outside the process tree "
           "at checkpoint, through no fd of the root process; such an image cannot be restored (take it with "
           "--drop-outside)");
    fail("fd ", root_fd, " (", m.pool[k].value("desc", ""), "), shared with child processes, was connected outside "
         "the process at checkpoint; pass --inherit-fd ", root_fd, "=<fd> to give it one");
  }
  for (const auto& kid : m.children)
    for (const auto& e : kid.fds) {
      const json& f = kid.files.at(e["file"].get<size_t>());
      if (f["kind"] == "external")
        fail("child process ", kid.process.pid, ": fd ", e["fd"].get<int>(), " (", f.value("desc", ""),
             ") was connected outside the process tree at checkpoint; only the root process's fds can be given "
             "(take the image with --drop-outside)");
    }
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
  // A tree's root opens the pool and the shared memory objects after this.
  const size_t root_opens = r.member == 0 ? r.m.pool.size() + r.shmem().size() : 0;
  const rlim_t minimal = rlim_t(max_fd) + 1 + keep.size() + r.inherit.size() + root_opens;
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
  for (int fd : r.pool_fds) ::close(fd);
  r.pool_fds.clear();
  for (int fd : fillers)
    if (std::none_of(r.m.fds.begin(), r.m.fds.end(), [&](const json& e) { return e["fd"].get<int>() == fd; }))
      ::close(fd);
}

namespace {

// `which` (indices into `entries`) in the order to open them: unix sockets
// whose file was removed first. Such a socket binds its name and removes
// the file again, freeing the path for a socket bound there later (a server
// that made its listener anew, keeping the old one open): the other way
// round, the later one's file would be in the way.
std::vector<size_t> name_freed_first(const json& entries, std::vector<size_t> which) {
  std::stable_partition(which.begin(), which.end(), [&](size_t i) {
    const json& f = entries[i];
    return f.value("kind", "") == "unix" && f.contains("bound") && f["bound"].value("unlinked", false);
  });
  return which;
}

}  // namespace

void open_pool(RestoreContext& r) {
  RestoreFiles rf;  // pairs pipe ends and socket pairs across the pool
  r.pool_fds.assign(r.m.pool.size(), -1);
  std::vector<size_t> all(r.m.pool.size());
  for (size_t k = 0; k < all.size(); k++) all[k] = k;
  for (size_t k : name_freed_first(r.m.pool, all)) {
    const json& f = r.m.pool[k];
    in_context(cat("shared ", f.value("desc", f["kind"].get<std::string>())), [&] {
      if (f["kind"] == "external") {
        // The restoring side gives it for one of the root's fds (check_files).
        int given = -1;
        for (const auto& e : r.m.fds) {
          const json& own = r.m.files.at(e["file"].get<size_t>());
          if (own["kind"] == "pooled" && own["pool"] == k)
            if (auto it = r.inherit.find(e["fd"].get<int>()); it != r.inherit.end()) given = it->second;
        }
        if (given < 0) fail("nothing to inherit for it");
        r.pool_fds[k] = r.park_fd(::fcntl(given, F_DUPFD_CLOEXEC, r.spare_fd_base));
        return;
      }
      const FileKind* kind = kind_of(f);
      if (kind->waits_for) fail("a ", f["kind"].get<std::string>(), " shared by processes is not supported");
      r.pool_fds[k] = r.park_fd(kind->open(r, rf, f));
      take_description_locks(r.pool_fds[k], f);
    });
  }
}

void restore_files(RestoreContext& r) {
  RestoreFiles rf;
  std::vector<std::vector<const json*>> fds_of(r.m.files.size());
  for (const auto& e : r.m.fds) fds_of.at(e["file"].get<size_t>()).push_back(&e);

  std::vector<size_t> todo;
  for (size_t i = 0; i < r.m.files.size(); i++) {
    const json& f = r.m.files[i];
    if (f["kind"] == "pooled") {
      // Opened by the tree's root before it made its children (open_pool).
      size_t k = f["pool"].get<size_t>();
      if (k >= r.pool_fds.size()) fail(describe(f, fds_of[i]), ": image: pool entry ", k, " does not exist");
      for (const json* e : fds_of[i]) in_context(describe(f, {e}), [&] { install(rf, *e, r.pool_fds[k]); });
      continue;
    }
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
  todo = name_freed_first(r.m.files, todo);
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
        take_description_locks(fd.get(), f);
        for (const json* e : fds_of[i]) install(rf, *e, fd.get());
      });
    }
    if (later.size() == todo.size())
      fail(describe(r.m.files[later[0]], fds_of[later[0]]), ": waits for fds that never get a file");
    todo = std::move(later);
  }
}

}  // namespace thaw::engine
