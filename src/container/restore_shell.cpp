#include "container/restore_shell.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "container/cgroup.h"
#include "container/init.h"
#include "container/mounts.h"
#include "engine/engine.h"
#include "image/image.h"

namespace thaw::container {

namespace {

using nlohmann::json;

constexpr int kShellSocket = 3;     // the shell's end of its request socket
constexpr int kRestoreFailed = 70;  // a restore process that could not restore
constexpr size_t kMaxPacket = 1 << 20;
constexpr int kFdsPerRestore = 5;   // fds 0-4 of a restore process

// One request or reply on the shell's SOCK_SEQPACKET socket: a JSON text,
// and with a request the fds the restore process gets.
void send_packet(int sock, const std::string& body, const int* fds, int nfds) {
  iovec iov{const_cast<char*>(body.data()), body.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kFdsPerRestore)] = {};
  if (nfds > 0) {
    mh.msg_control = ctl;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) fail_errno("send to the restore shell");
}

// The next packet, or nullopt at end of file. Fds that came with it are
// added to *fds (closed if fds is null). Throws on a timeout.
std::optional<std::string> recv_packet(int sock, int timeout_ms, std::vector<UniqueFd>* fds) {
  if (timeout_ms >= 0) {
    struct pollfd p{sock, POLLIN, 0};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      if (r > 0) break;
      if (r < 0 && errno != EINTR) fail_errno("poll");
      if (r == 0) fail("no answer within ", timeout_ms, " ms");
    }
  }
  std::string body(kMaxPacket, '\0');
  iovec iov{body.data(), body.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kFdsPerRestore)];
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  ssize_t n;
  do n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) fail_errno("receive from the restore shell");
  std::vector<UniqueFd> got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        got.emplace_back(fd);
      }
    }
  if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) fail("a message to or from the restore shell was truncated");
  if (n == 0 && got.empty()) return std::nullopt;
  if (fds)
    for (auto& f : got) fds->push_back(std::move(f));
  body.resize(n);
  return body;
}

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
    };
    return engine::restore(o).exit_status;
  } catch (const std::exception& e) {
    report({{"ok", false}, {"error", e.what()}});
    return kRestoreFailed;
  }
}

// In the child of clone3: nothing of the shell's stays open but the image's
// page data. The shell is single-threaded, so its heap and locks are
// consistent here and ordinary code may run. (glibc's cached tid of this
// thread is the shell's; engine::restore creates every process of the
// container with fork(), which sets it right in them.)
[[noreturn]] void run_restore(const image::Reader& img, const Spec& spec, std::vector<UniqueFd>& fds) {
  ::setsid();  // Container::stop kills the restore's process group
  for (int i = 0; i < kFdsPerRestore; i++)
    if (::dup2(fds[i].get(), i) < 0) ::_exit(kRestoreFailed);
  for (auto& f : fds) f.release();  // closed with the rest just below
  int keep = img.pages_fd();
  ::syscall(SYS_close_range, kFdsPerRestore, keep - 1, 0);
  ::syscall(SYS_close_range, keep + 1, ~0U, 0);
  std::fflush(nullptr);
  ::_exit(restore_container(img, spec));
}

}  // namespace

int restore_shell_main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: thaw __restore-shell IMAGE (fd 3: the request socket)\n");
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  // Neither the image's page data nor the fds of a request may take a
  // number the restore processes get theirs at (0-4): hold those.
  std::vector<UniqueFd> low;
  for (;;) {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd || fd.get() >= kFdsPerRestore) break;
    low.push_back(std::move(fd));
  }
  std::optional<image::Reader> img;
  try {
    img.emplace(argv[2]);
  } catch (const std::exception& e) {
    send_packet(kShellSocket, json{{"ok", false}, {"error", e.what()}}.dump(), nullptr, 0);
    return 1;
  }
  double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  try {
    send_packet(kShellSocket, json{{"ok", true}, {"load_ms", load_ms}}.dump(), nullptr, 0);
    for (;;) {
      std::vector<UniqueFd> fds;
      auto msg = recv_packet(kShellSocket, -1, &fds);
      if (!msg) return 0;  // the runtime is done with this image, or gone
      json reply;
      try {
        Spec spec = spec_from_json(json::parse(*msg));
        if (fds.size() != kFdsPerRestore) fail("a restore request came with ", fds.size(), " fds, not ", kFdsPerRestore);
        // clone3 wants no exit signal with CLONE_PARENT: the child gets the
        // shell's own (SIGCHLD, to the runtime).
        clone_args ca{};
        ca.flags = CLONE_PARENT;
        long pid = ::syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) run_restore(*img, spec, fds);
        if (pid < 0) fail_errno("clone3");
        reply = {{"pid", pid}};
      } catch (const std::exception& e) {
        reply = {{"error", e.what()}};
      }
      fds.clear();
      send_packet(kShellSocket, reply.dump(), nullptr, 0);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thaw restore shell (%s): %s\n", argv[2], e.what());
    return 1;
  }
}

// ---------------------------------------------------------------- the runtime's side

std::unique_ptr<RestoreShell> RestoreShell::start(const std::string& image, const std::string& thaw_exe, int log_fd,
                                                  int timeout_ms) {
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
    so.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    so.fds = {{0, null.get()}, {1, log_fd}, {2, log_fd}, {kShellSocket, theirs.get()}};
    // Out of the terminal's process group, like the containers it restores.
    so.new_session = true;
    s->proc_ = spawn(so);
    theirs.reset();
    auto hello = recv_packet(s->sock_.get(), timeout_ms, nullptr);
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
    send_packet(sock_.get(), to_json(spec).dump(), fds.data(), kFdsPerRestore);
    // A fork takes milliseconds; a shell this late is wedged.
    r = recv_packet(sock_.get(), 30000, nullptr);
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
