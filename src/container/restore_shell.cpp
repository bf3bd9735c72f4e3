#include "container/restore_shell.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/io.h"
#include "common/packet.h"
#include "common/timing.h"
#include "container/cgroup.h"
#include "container/dev_shm_files.h"
#include "container/init.h"
#include "container/mounts.h"
#include "engine/engine.h"
#include "engine/template.h"
#include "image/image.h"

namespace thaw::container {

namespace {

using nlohmann::json;

constexpr int kShellSocket = 3;     // the shell's end of its request socket
constexpr int kRestoreFailed = 70;  // a restore process that could not restore
constexpr int kFdsPerRestore = 5;   // fds 0-4 of a restore process
// A restore from the live template also gets these (see
// restore_from_template): the ready pipe (the restore process says when its
// namespaces are set up), the verdict pipe (the shell says whether the copy
// runs) and the files socket (its namespace init sends the copy's own
// files to the shell).
constexpr int kReadyFd = 5;
constexpr int kVerdictFd = 6;
constexpr int kFilesFd = 7;
// A restore process's copy of the image's files of /dev/shm, as its shell
// opened them with the image (Spec::dev_shm_fd).
constexpr int kDevShmFd = 8;
constexpr int kLowFds = 9;  // fd numbers the shell keeps free for those
// How long a container's namespaces may take to be set up.
constexpr int kNamespaceTimeoutMs = 10000;
// How long making the copy may take once they are (tens of milliseconds
// when it works).
constexpr int kVerdictTimeoutMs = 30000;

// ---------------------------------------------------------------- the shell

void report(const json& j) {
  std::string line = j.dump() + "\n";
  ssize_t ignored = ::write(kReportFd, line.data(), line.size());
  (void)ignored;
  ::close(kReportFd);
}

// Once the worker runs it holds its own copies of fds 1-3; ours would keep
// the control channel open after the worker died, hiding its EOF.
void drop_worker_fds() {
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd : {1, 2, kControlFd}) ::dup2(null, fd);
  ::close(null);
}

// The restore process: the container's root, in place of thaw's init. Its
// fds 0-3 go to the worker; it reports on fd 4 once the worker runs, then
// waits for the container (restore without detach: the engine's init is our
// child, and would be orphaned).
int restore_container(const image::Reader& img, const Spec& spec) {
  try {
    join_cgroups(spec.cgroups);
    engine::RestoreOptions o;
    o.dir = img.dir();
    o.preloaded = &img;
    o.inherit = {{0, 0}, {1, 1}, {2, 2}, {kControlFd, kControlFd}};
    o.namespaces = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
    o.in_namespace = [&spec] {
      ::close(kReportFd);  // the engine's init must not hold the report pipe
      setup_namespace(spec);
    };
    o.detach = false;
    // GPU images: memory restored lazily beside the driver's restore, when
    // asked (bench/gpu_check.sh measures it; the default until it has run
    // on a GPU is all memory first).
    const char* gpu_lazy = std::getenv("THAW_GPU_LAZY");
    o.gpu_lazy = gpu_lazy && std::string(gpu_lazy) == "1";
    o.on_running = [](const engine::RestoreResult& r) {
      report({{"ok", true},
              {"host_pid", r.host_pid},
              {"init_pid", r.init_pid},
              {"ready_ms", r.ready_ms},
              {"load_ms", r.load_ms},
              {"setup_ms", r.setup_ms},
              {"memory_ms", r.memory_ms},
              {"threads_ms", r.threads_ms},
              {"finish_ms", r.finish_ms}});
      drop_worker_fds();
      ::close(kDevShmFd);  // the container's /dev/shm is filled: the image's may go
    };
    return engine::restore(o).exit_status;
  } catch (const std::exception& e) {
    report({{"ok", false}, {"error", e.what()}});
    return kRestoreFailed;
  }
}

// pid 1 of a container whose worker is a copy of the live template: sets
// up the namespaces, sends the copy's own files to the shell, says so on
// `ready` (to the restore process), and once told the copy is its child
// ('G' on `go`), forwards termination signals to it, reaps, and exits the
// way it did. Holds the container's fds 0-4 as the restore process does.
[[noreturn]] void template_ns_init(const image::Reader& img, const Spec& spec, pid_t worker, int ready, int go) {
  for (int fd = kFdsPerRestore; fd < 1024; fd++)
    if (fd != ready && fd != go && fd != kFilesFd && fd != kDevShmFd && fd != img.pages_fd()) ::close(fd);
  try {
    setup_namespace(spec);
  } catch (const std::exception& e) {
    write_line(ready, cat("E set up the namespace: ", e.what()));
    ::_exit(kRestoreFailed);
  }
  ::close(kDevShmFd);
  const auto& m = img.manifest();
  try {
    std::map<int, int> inherit;  // the container's fds, where the image had them (dups of them share them)
    for (const auto& e : m.fds)
      if (e["fd"].get<int>() <= kControlFd && m.files.at(e["file"].get<size_t>())["kind"] == "external")
        inherit[e["fd"]] = e["fd"];
    engine::Template::send_copy_files(img, inherit, {&ready, &go}, kFilesFd);
  } catch (const std::exception& e) {
    write_line(ready, cat("E the copy's files: ", e.what()));
    ::_exit(kRestoreFailed);
  }
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2; fd++)
    if (fd != null) ::dup2(null, fd);
  int status = engine::Template::run_as_init(m, worker, ready, go);
  ::_exit(status < 0 ? kRestoreFailed : status);
}

// The restore process of a copy of the live template: makes the
// container's pid 1 in fresh namespaces and, once that has set them up,
// tells the shell its pid (ready pipe: "C <pid>", or "E <why>"); then waits
// for the shell's verdict: "W <pid> <ms...>" — the copy runs, report it and
// wait for the container — or anything else: restore from the image as
// restore_container does.
int restore_from_template(const image::Reader& img, const Spec& spec, pid_t copy_pid) {
  join_cgroups(spec.cgroups);
  int gp[2], rp[2];
  if (::pipe2(gp, O_CLOEXEC) != 0 || ::pipe2(rp, O_CLOEXEC) != 0) {
    write_line(kReadyFd, cat("E pipe: ", std::strerror(errno)));
    return restore_container(img, spec);
  }
  clone_args ca{};
  ca.flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
  ca.exit_signal = SIGCHLD;
  long init = ::syscall(SYS_clone3, &ca, sizeof ca);
  if (init == 0) template_ns_init(img, spec, copy_pid, rp[1], gp[0]);
  ::close(gp[0]);
  ::close(rp[1]);
  ::close(kFilesFd);  // init's now
  UniqueFd go(gp[1]), ready(rp[0]);
  if (init < 0) {
    write_line(kReadyFd, cat("E clone3: ", std::strerror(errno)));
  } else {
    bool timed_out = false;
    std::string line = read_line(ready.get(), kNamespaceTimeoutMs, &timed_out);
    if (line == "OK") line = cat("C ", init);
    else if (timed_out) line = cat("E the container's namespaces were not set up within ", kNamespaceTimeoutMs, " ms");
    else if (line.empty()) line = "E the namespace's init ended before it was set up";
    write_line(kReadyFd, line);
  }
  ready.reset();
  ::close(kReadyFd);
  // A shell stuck in the copy (an injected call that never returns) must
  // not hold the container back for good: past the deadline, the image.
  bool verdict_late = false;
  std::string verdict = read_line(kVerdictFd, kVerdictTimeoutMs, &verdict_late);
  ::close(kVerdictFd);
  if (verdict_late) verdict = cat("F the restore shell gave no verdict within ", kVerdictTimeoutMs, " ms");
  unsigned long long worker = 0;
  double total_ms = 0, fork_ms = 0;
  if (init > 0 && std::sscanf(verdict.c_str(), "W %llu %lf %lf", &worker, &total_ms, &fork_ms) == 3) {
    ssize_t ignored = ::write(go.get(), "G", 1);
    (void)ignored;
    go.reset();
    report({{"ok", true},
            {"host_pid", worker},
            {"init_pid", init},
            {"template", true},
            {"ready_ms", total_ms},
            {"fork_ms", fork_ms}});
    drop_worker_fds();
    int status = 0;
    while (::waitpid(static_cast<pid_t>(init), &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  go.reset();
  if (init > 0) {
    ::kill(static_cast<pid_t>(init), SIGKILL);
    ::waitpid(static_cast<pid_t>(init), nullptr, 0);
  }
  std::fprintf(stderr, "thaw: restore from the live template failed (%s); restoring from the image\n",
               verdict.empty() ? "the restore shell gave no verdict" : verdict.c_str() + (verdict[0] == 'F' ? 2 : 0));
  return restore_container(img, spec);
}

// The image's files of its container's /dev/shm (dev_shm_files.h), opened
// from the directory the image was read from, and held with the image: a
// snapshot recreated while restores run puts another image, with its own,
// at the path. An empty fd for an image without them.
UniqueFd open_image_dev_shm(int image_dir, const std::string& image) {
  struct stat held, now;
  if (::fstat(image_dir, &held) != 0 || ::stat(image.c_str(), &now) != 0 || held.st_dev != now.st_dev ||
      held.st_ino != now.st_ino)
    fail("the image at ", image, " was replaced while it was read (its snapshot recreated)");
  UniqueFd fd(::openat(image_dir, kImageDevShm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd && errno != ENOENT) fail_errno("open ", image, "/", kImageDevShm);
  return fd;
}

// In the child of clone3: nothing of the shell's stays open but the image's
// page data. The shell is single-threaded, so its heap and locks are
// consistent here and ordinary code may run. (glibc's cached tid of this
// thread is the shell's; engine::restore creates every process of the
// container with fork(), which sets it right in them.)
// With `pipes` (ready, verdict), the restore is a copy of the live template.
// `dev_shm`: the image's files of /dev/shm (-1: none), given as kDevShmFd.
[[noreturn]] void run_restore(const image::Reader& img, Spec spec, std::vector<UniqueFd>& fds, const int* pipes,
                              pid_t copy_pid, int dev_shm) {
  // pipes: ready, verdict, files.
  ::setsid();  // Container::stop kills the restore's process group
  ::signal(SIGPIPE, SIG_DFL);
  for (int i = 0; i < kFdsPerRestore; i++)
    if (::dup2(fds[i].get(), i) < 0) ::_exit(kRestoreFailed);
  if (pipes && (::dup2(pipes[0], kReadyFd) < 0 || ::dup2(pipes[1], kVerdictFd) < 0 || ::dup2(pipes[2], kFilesFd) < 0))
    ::_exit(kRestoreFailed);
  if (dev_shm >= 0 && ::dup2(dev_shm, kDevShmFd) < 0) ::_exit(kRestoreFailed);
  spec.dev_shm_fd = dev_shm >= 0 ? kDevShmFd : -1;
  for (auto& f : fds) f.release();  // closed with the rest just below
  int keep = img.pages_fd();
  if (!pipes) ::syscall(SYS_close_range, kFdsPerRestore, kFilesFd, 0);
  if (dev_shm < 0) ::close(kDevShmFd);
  ::syscall(SYS_close_range, kLowFds, keep - 1, 0);
  ::syscall(SYS_close_range, keep + 1, ~0U, 0);
  std::fflush(nullptr);
  ::_exit(pipes ? restore_from_template(img, spec, copy_pid) : restore_container(img, spec));
}

// The shell's side of a restore from the live template: the restore
// process (already forked, `ready` and `verdict` its pipes) makes the
// container's pid 1; the template makes the copy in its namespaces. Returns
// the verdict sent (and logs a failure); a template found broken is dropped.
void copy_template(std::unique_ptr<engine::Template>& tmpl, const image::Reader& img, const Spec& spec,
                   const std::vector<UniqueFd>& fds, int ready, int verdict, int files) {
  std::string line;
  try {
    bool timed_out = false;
    // Past the restore process's own deadline for its namespace init.
    std::string l = read_line(ready, kNamespaceTimeoutMs + 5000, &timed_out);
    if (l.rfind("E ", 0) == 0) fail(l.substr(2));
    pid_t init = l.rfind("C ", 0) == 0 ? std::atoi(l.c_str() + 2) : 0;
    if (init <= 0)
      fail(timed_out ? std::string("the restore process did not say whether its namespaces were set up")
                     : std::string("the restore process ended before its namespaces were set up"));
    const auto& m = img.manifest();
    // Sent before the init said it was ready: all here.
    auto own = engine::Template::receive_copy_files(files, 1000);
    std::map<int, int> inherit;
    for (const auto& [fd, mine] : own) inherit[fd] = mine.get();
    for (const auto& e : m.fds) {
      int fd = e["fd"];
      // Above the container's own fds: a dup of one of them, which gets its
      // replacement (or, none given, the restore says so).
      if (m.files.at(e["file"].get<size_t>())["kind"] != "external" || fd > kControlFd) continue;
      inherit[fd] = fds[fd].get();
    }
    auto copy = tmpl->spawn(init, inherit, [&](pid_t pid) { add_to_cgroups(pid, spec.cgroups); });
    line = cat("W ", copy.host_pid, " ", copy.total_ms, " ", copy.fork_ms);
  } catch (const std::exception& e) {
    line = cat("F ", e.what());
    if (!tmpl->usable()) {
      std::fprintf(stderr, "thaw: restore shell: the live template of %s is broken (%s); restores read the image\n",
                   img.dir().c_str(), e.what());
      tmpl.reset();
    }
  }
  write_line(verdict, line);
}

}  // namespace

int restore_shell_main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: thaw __restore-shell IMAGE [--template] (fd 3: the request socket)\n");
    return 2;
  }
  bool want_template = argc > 3 && std::string(argv[3]) == "--template";
  // A restore process gone before its verdict must not take the shell (and
  // with it the template) along.
  ::signal(SIGPIPE, SIG_IGN);
  auto t0 = std::chrono::steady_clock::now();
  // Neither the image's page data nor the fds of a request may take a
  // number the restore processes get theirs at (0-8): hold those.
  std::vector<UniqueFd> low;
  for (;;) {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd || fd.get() >= kLowFds) break;
    low.push_back(std::move(fd));
  }
  std::optional<image::Reader> img;
  UniqueFd dev_shm;
  SavedInodes dev_shm_inodes;
  std::string dev_shm_path = cat(argv[2], "/", kImageDevShm);
  try {
    UniqueFd dir(::open(argv[2], O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir) fail_errno("open ", argv[2]);
    img.emplace(argv[2]);
    dev_shm = open_image_dev_shm(dir.get(), argv[2]);
    if (dev_shm)
      dev_shm_inodes = read_saved_inodes(saved_inodes_path(cat("/proc/self/fd/", dir.get(), "/", kImageDevShm)));
  } catch (const std::exception& e) {
    send_packet(kShellSocket, json{{"ok", false}, {"error", e.what()}}.dump(), nullptr, 0, "the runtime");
    return 1;
  }
  double load_ms = ms_since(t0);
  try {
    send_packet(kShellSocket, json{{"ok", true}, {"load_ms", load_ms}}.dump(), nullptr, 0, "the runtime");
    std::unique_ptr<engine::Template> tmpl;
    if (want_template) {
      if (std::string why = engine::Template::ineligible(img->manifest()); !why.empty()) {
        std::fprintf(stderr, "thaw: note: each restore of %s reads the image (no live template: %s)\n", argv[2],
                     why.c_str());
        want_template = false;
      }
    }
    for (;;) {
      // The template is made while no restore waits (the first restore of
      // a call that started this shell reads the image instead).
      if (want_template && !tmpl) {
        struct pollfd p{kShellSocket, POLLIN, 0};
        if (::poll(&p, 1, 0) == 0) {
          want_template = false;  // one try
          try {
            auto t0 = std::chrono::steady_clock::now();
            tmpl = engine::Template::create(*img);
            double ms = ms_since(t0);
            std::string dir = argv[2];
            std::string key = dir.substr(0, dir.rfind('/'));
            key = key.substr(key.rfind('/') + 1).substr(0, 12);
            std::fprintf(stderr, "Live template of snapshot %s ready in %.0f ms: restores copy it.\n", key.c_str(), ms);
          } catch (const std::exception& e) {
            std::fprintf(stderr, "thaw: note: each restore of %s reads the image (%s)\n", argv[2], e.what());
          }
        }
      }
      std::vector<UniqueFd> fds;
      auto msg = recv_packet(kShellSocket, -1, &fds, "the runtime");
      if (!msg) return 0;  // the runtime is done with this image, or gone
      json reply;
      try {
        Spec spec = spec_from_json(json::parse(*msg));
        spec.dev_shm_from = dev_shm ? dev_shm_path : "";
        spec.dev_shm_inodes = dev_shm_inodes;
        if (fds.size() != kFdsPerRestore) fail("a restore request came with ", fds.size(), " fds, not ", kFdsPerRestore);
        // clone3 wants no exit signal with CLONE_PARENT: the child gets the
        // shell's own (SIGCHLD, to the runtime).
        UniqueFd ready_r, ready_w, verdict_r, verdict_w, files_r, files_w;
        if (tmpl) {
          int a[2], b[2], c[2];
          if (::pipe2(a, O_CLOEXEC) != 0) fail_errno("pipe");
          ready_r.reset(a[0]);
          ready_w.reset(a[1]);
          if (::pipe2(b, O_CLOEXEC) != 0) fail_errno("pipe");
          verdict_r.reset(b[0]);
          verdict_w.reset(b[1]);
          if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, c) != 0) fail_errno("socketpair");
          files_r.reset(c[0]);
          files_w.reset(c[1]);
        }
        clone_args ca{};
        ca.flags = CLONE_PARENT;
        long pid = ::syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) {
          int pipes[3] = {ready_w.get(), verdict_r.get(), files_w.get()};
          run_restore(*img, spec, fds, tmpl ? pipes : nullptr, tmpl ? tmpl->copy_pid() : 0, dev_shm.get());
        }
        if (pid < 0) fail_errno("clone3");
        if (tmpl) {
          ready_w.reset();
          verdict_r.reset();
          files_w.reset();
          copy_template(tmpl, *img, spec, fds, ready_r.get(), verdict_w.get(), files_r.get());
        }
        reply = {{"pid", pid}};
      } catch (const std::exception& e) {
        reply = {{"error", e.what()}};
      }
      fds.clear();
      send_packet(kShellSocket, reply.dump(), nullptr, 0, "the runtime");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thaw restore shell (%s): %s\n", argv[2], e.what());
    return 1;
  }
}

// ---------------------------------------------------------------- the runtime's side

std::unique_ptr<RestoreShell> RestoreShell::start(const std::string& image, const std::string& thaw_exe, int log_fd,
                                                  int timeout_ms, bool live_template) {
  return with_context("start the restore shell of " + image, [&] {
    std::unique_ptr<RestoreShell> s(new RestoreShell());
    s->image_ = image;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) fail_errno("socketpair");
    s->sock_.reset(sv[0]);
    UniqueFd theirs(sv[1]);
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!null) fail_errno("open /dev/null");
    SpawnOptions so;
    so.argv = {thaw_exe, "__restore-shell", image};
    if (live_template) so.argv.push_back("--template");
    so.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    // The GPU restore's settings (driver path, deadlines, THAW_GPU_LAZY)
    // are the runtime's: the shell restores on its behalf.
    for (const auto& kv : current_environment())
      if (kv.rfind("THAW_GPU_", 0) == 0 || kv.rfind("THAW_LIBCUDA=", 0) == 0) so.env.push_back(kv);
    so.fds = {{0, null.get()}, {1, log_fd}, {2, log_fd}, {kShellSocket, theirs.get()}};
    // Out of the terminal's process group, like the containers it restores.
    so.new_session = true;
    s->proc_ = spawn(so);
    theirs.reset();
    auto hello = recv_packet(s->sock_.get(), timeout_ms, nullptr, "the restore shell");
    if (!hello) {
      s->proc_.wait(2000);
      fail("it ended (status ", s->proc_.status(), ") before reading the image");
    }
    json j = json::parse(*hello);
    if (!j.value("ok", false)) fail(j.value("error", std::string("unknown error")));
    s->load_ms_ = j.value("load_ms", 0.0);
    return s;
  });
}

RestoreShell::~RestoreShell() {
  sock_.reset();
  if (!proc_.wait(2000)) proc_.kill(SIGKILL);
}

Child RestoreShell::fork_restore(const Spec& spec, const std::array<int, 5>& fds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sock_) throw RestoreShellGone(cat("the restore shell of ", image_, " is gone"));
  std::optional<std::string> r;
  try {
    send_packet(sock_.get(), to_json(spec).dump(), fds.data(), kFdsPerRestore, "the restore shell");
    // A fork takes milliseconds; a shell this late is wedged.
    r = recv_packet(sock_.get(), 30000, nullptr, "the restore shell");
  } catch (const std::exception& e) {
    sock_.reset();
    throw RestoreShellGone(cat("the restore shell of ", image_, ": ", e.what()));
  }
  if (!r) {
    sock_.reset();
    throw RestoreShellGone(cat("the restore shell of ", image_, " is gone"));
  }
  json j = json::parse(*r);
  if (!j.contains("pid")) fail("the restore shell of ", image_, ": ", j.value("error", std::string("no pid")));
  return Child(j["pid"].get<pid_t>());
}

bool RestoreShell::usable() {
  std::lock_guard<std::mutex> lock(mu_);
  return sock_ && proc_.running() && !proc_.wait(0);
}

}  // namespace thaw::container
