// thaw template DIR --socket PATH: keeps a live template of an image
// (engine/template.h) and serves `thaw restore --from-template PATH`: each
// restore is a copy of the template in fresh pid and mount namespaces,
// with the client's stdio (and --inherit-fd) as its inherited fds.
//
// Protocol (SOCK_SEQPACKET, JSON): the client sends {"fds": [image fd...]}
// with its own fds for them attached, in that order; the server answers
// {"running": pid, "ms": ..., "fork_ms": ...} or {"error": "..."}; later the
// copy's namespace init sends {"exit": status} when the copy has ended.
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/commands.h"
#include "common/error.h"
#include "common/io.h"
#include "common/packet.h"
#include "common/timing.h"
#include "common/unix_address.h"
#include "engine/template.h"
#include "image/image.h"

namespace thaw::cli {

namespace {

using nlohmann::json;

constexpr int kNamespaceTimeoutMs = 10000;
constexpr int kReplyTimeoutMs = 60000;

// pid 1 of a copy's namespaces: a /proc of its own, the copy's own files
// made and sent on `files`, the image's mapped files checked where the copy
// will see them; once told the copy is its child ('G'), reaps until the
// copy ends and sends its status on `conn`. `inherit`: the client's fds.
[[noreturn]] void copy_init(const image::Reader& img, const std::map<int, int>& inherit, pid_t copy, int ready,
                            int go, int conn, int files) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0 ||
      ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    std::fprintf(stderr, "thaw: note: no /proc of the new pid namespace (%s)\n", std::strerror(errno));
  try {
    engine::Template::send_copy_files(img, inherit, {&ready, &go, &conn}, files);
  } catch (const std::exception& e) {
    write_line(ready, cat("E the copy's files: ", e.what()));
    ::_exit(1);
  }
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2; fd++)
    if (fd != null) ::dup2(null, fd);
  int code = engine::Template::run_as_init(img.manifest(), copy, ready, go);
  if (code < 0) ::_exit(1);
  try {
    send_packet(conn, json{{"exit", code}}.dump(), nullptr, 0, "the client");
  } catch (const std::exception&) {
    // the client is gone: nobody to tell
  }
  ::_exit(0);
}

// One restore: the copy's namespace init (our child, `inits`), then the copy.
void serve_one(engine::Template& tmpl, const image::Reader& img, int conn, std::vector<pid_t>& inits) {
  const auto& m = img.manifest();
  std::vector<UniqueFd> fds;
  auto msg = recv_packet(conn, 5000, &fds, "the client");
  if (!msg) return;
  json req = json::parse(*msg);
  auto numbers = req.value("fds", std::vector<int>{});
  if (numbers.size() != fds.size()) fail("the request names ", numbers.size(), " fds and came with ", fds.size());
  std::map<int, int> inherit;
  for (const auto& e : m.fds) {
    int fd = e["fd"];
    if (m.files.at(e["file"].get<size_t>())["kind"] != "external") continue;
    auto it = std::find(numbers.begin(), numbers.end(), fd);
    if (it != numbers.end()) inherit[fd] = fds[it - numbers.begin()].get();
  }
  // A dup of a given fd shares it; any other must be given.
  engine::Template::check_inherited(m, inherit);
  int rp[2], gp[2], fp[2];
  if (::pipe2(rp, O_CLOEXEC) != 0 || ::pipe2(gp, O_CLOEXEC) != 0) fail_errno("pipe");
  UniqueFd ready_r(rp[0]), ready_w(rp[1]), go_r(gp[0]), go_w(gp[1]);
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fp) != 0) fail_errno("socketpair");
  UniqueFd files_r(fp[0]), files_w(fp[1]);
  clone_args ca{};
  ca.flags = CLONE_NEWPID | CLONE_NEWNS;
  ca.exit_signal = SIGCHLD;
  long init = ::syscall(SYS_clone3, &ca, sizeof ca);
  if (init < 0) fail_errno("clone3 of the namespace's init");
  if (init == 0) copy_init(img, inherit, tmpl.copy_pid(), ready_w.get(), go_r.get(), conn, files_w.get());
  inits.push_back(static_cast<pid_t>(init));
  ready_w.reset();
  go_r.reset();
  files_w.reset();
  auto kill_init = [&] { ::kill(static_cast<pid_t>(init), SIGKILL); };
  try {
    bool timed_out = false;
    std::string line = read_line(ready_r.get(), kNamespaceTimeoutMs, &timed_out);
    if (line.rfind("E ", 0) == 0) fail(line.substr(2));
    if (line != "OK")
      fail(timed_out ? cat("the namespace was not set up within ", kNamespaceTimeoutMs, " ms")
                     : std::string("the namespace's init ended before it was set up"));
    // Sent before the init said it was ready: all here.
    auto own = engine::Template::receive_copy_files(files_r.get(), 1000);
    for (const auto& [fd, mine] : own) inherit[fd] = mine.get();
    auto c = tmpl.spawn(static_cast<pid_t>(init), inherit, nullptr, CLONE_NEWNS);
    if (::write(go_w.get(), "G", 1) != 1) fail_errno("tell the namespace's init");
    send_packet(conn, json{{"running", c.host_pid}, {"ms", c.total_ms}, {"fork_ms", c.fork_ms}}.dump(), nullptr, 0,
                "the client");
  } catch (...) {
    kill_init();
    throw;
  }
}

int serve_template(const std::string& dir, const std::string& path) {
  image::Reader img(dir);
  ::signal(SIGPIPE, SIG_IGN);  // a client or namespace init gone must not end the server
  auto t0 = std::chrono::steady_clock::now();
  auto tmpl = engine::Template::create(img);
  double ms = ms_since(t0);
  UniqueFd lsock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!lsock) fail_errno("socket");
  sockaddr_un a = unix_address(path);
  if (::bind(lsock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    fail_errno("listen on ", path, " (remove it if no template server uses it any more)");
  if (::listen(lsock.get(), 64) != 0) fail_errno("listen");
  sigset_t stop;
  sigemptyset(&stop);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, sig);
  ::sigprocmask(SIG_BLOCK, &stop, nullptr);
  UniqueFd sigs(::signalfd(-1, &stop, SFD_CLOEXEC));
  std::fprintf(stderr, "template: %s held as process %d (made in %.1f ms); restores: thaw restore --from-template %s\n",
               dir.c_str(), tmpl->pid(), ms, path.c_str());
  std::vector<pid_t> inits;
  for (;;) {
    pollfd p[2] = {{lsock.get(), POLLIN, 0}, {sigs.get(), POLLIN, 0}};
    int r = ::poll(p, 2, 1000);
    for (auto it = inits.begin(); it != inits.end();)  // inits end with their copy
      it = ::waitpid(*it, nullptr, WNOHANG) != 0 ? inits.erase(it) : it + 1;
    if (r < 0 && errno == EINTR) continue;
    if (p[1].revents) break;
    if (!tmpl->usable()) {
      std::fprintf(stderr, "thaw: template: the template is gone; stopping\n");
      ::unlink(path.c_str());
      return 1;
    }
    if (!(p[0].revents & POLLIN)) continue;
    UniqueFd conn(::accept4(lsock.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) continue;
    try {
      serve_one(*tmpl, img, conn.get(), inits);
    } catch (const std::exception& e) {
      try {
        send_packet(conn.get(), json{{"error", e.what()}}.dump(), nullptr, 0, "the client");
      } catch (const std::exception&) {
      }
    }
  }
  ::unlink(path.c_str());
  return 0;
}

}  // namespace

int restore_from_template(const std::string& path, const std::map<int, int>& inherit, bool stats, bool detach) {
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) fail_errno("socket");
  sockaddr_un a = unix_address(path);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    fail_errno("connect to the template server at ", path, " (is `thaw template DIR --socket ", path, "` running?)");
  std::map<int, int> all = {{0, 0}, {1, 1}, {2, 2}};
  for (const auto& [n, m] : inherit) all[n] = m;
  std::vector<int> numbers, fds;
  for (const auto& [n, m] : all) {
    numbers.push_back(n);
    fds.push_back(m);
  }
  send_packet(sock.get(), json{{"fds", numbers}}.dump(), fds.data(), static_cast<int>(fds.size()),
              "the template server");
  auto reply = recv_packet(sock.get(), kReplyTimeoutMs, nullptr, "the template server");
  if (!reply) fail("the template server closed the connection without an answer");
  json j = json::parse(*reply);
  if (j.contains("error")) {
    std::string error = j["error"];
    // The template holds the image as it was restored: a file changed since
    // is changed for every copy, until the template is made again.
    std::string advice = error.find("changed since checkpoint") != std::string::npos ||
                                 error.find("no longer") != std::string::npos
                             ? "; the template's image no longer matches its files: take a new checkpoint and "
                               "start the template again"
                             : "";
    fail("restore from the template at ", path, ": ", error, advice);
  }
  pid_t pid = j.value("running", 0);
  if (stats || detach)
    std::fprintf(stderr, "restore: %s running as pid %d after %.1f ms (fork %.1f)\n", path.c_str(), pid,
                 j.value("ms", 0.0), j.value("fork_ms", 0.0));
  if (detach) {
    std::printf("%d\n", pid);
    return 0;
  }
  std::fflush(nullptr);
  auto end = recv_packet(sock.get(), -1, nullptr, "the template server");
  if (!end) fail("the restored process's namespace init went away; its exit status is unknown");
  return json::parse(*end).value("exit", 1);
}

Command add_template(CLI::App& app) {
  struct Opts {
    std::string dir, socket;
  };
  auto o = std::make_shared<Opts>();
  auto* t = app.add_subcommand(
      "template", "Hold a live template of an image and serve fast restores of it (thaw restore --from-template)");
  t->add_option("dir", o->dir, "image directory")->required();
  t->add_option("--socket", o->socket, "unix socket to serve restores on")->required();
  return {t, [o] {
            try {
              return serve_template(o->dir, o->socket);
            } catch (const std::exception& e) {
              std::fprintf(stderr, "thaw: template: %s\n", e.what());
              return 1;
            }
          }};
}

}  // namespace thaw::cli
