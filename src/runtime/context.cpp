#include "runtime/context.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>

#include "common/error.h"
#include "container/cgroup.h"
#include "container/fsutil.h"
#include "container/spawn.h"

namespace thaw::runtime {

namespace {

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) fail_errno("readlink /proc/self/exe");
  return std::string(buf, n);
}

std::string find_python_dir(const std::string& exe) {
  if (const char* p = std::getenv("THAW_PYTHONPATH"); p && *p) return p;
  std::string bin_dir = exe.substr(0, exe.rfind('/'));
  char real[PATH_MAX];
  for (const std::string& cand : {bin_dir + "/../python", std::string(THAW_SOURCE_DIR) + "/python"})
    if (container::exists(cand + "/thaw/__init__.py") && ::realpath(cand.c_str(), real)) return real;
  fail("cannot find thaw's Python package (looked in ", bin_dir, "/../python and ", THAW_SOURCE_DIR,
       "/python); set THAW_PYTHONPATH to the directory holding thaw/");
}

}  // namespace

Context make_context(Log& log) {
  std::string exe = self_exe();
  Context ctx{Store(Store::default_home()), log, exe, "/usr/bin/python3", find_python_dir(exe), "", {}};
  if (const char* py = std::getenv("THAW_PYTHON"); py && *py) ctx.python = py;
  ctx.fingerprint = read_fingerprint(ctx.python, ctx.python_dir);
  // What runtimes killed with SIGKILL left (their containers' groups,
  // empty): gone with the first runtime that starts after them.
  container::sweep_stale_cgroups(std::chrono::minutes(10));
  return ctx;
}

std::vector<std::string> user_python_env(const Context& ctx) {
  auto env = container::current_environment();
  const char* pp = std::getenv("PYTHONPATH");
  container::set_env(env, "PYTHONPATH", pp && *pp ? ctx.python_dir + ":" + pp : ctx.python_dir);
  container::set_env(env, "THAW_BIN", ctx.thaw_exe);
  container::set_env(env, "THAW_HOME", ctx.store.home());
  return env;
}

Captured run_capture(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     const std::string& cwd, int log_fd, double timeout_s) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail_errno("pipe");
  UniqueFd r(p[0]), w(p[1]);
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  container::SpawnOptions so;
  so.argv = argv;
  so.env = env;
  so.cwd = cwd;
  so.fds = {{0, null.get()}, {1, w.get()}, {2, log_fd}};
  auto child = container::spawn(so);
  w.reset();
  Captured c;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      child.kill(SIGKILL);
      child.wait();
      fail(argv[0], " ", argv.size() > 1 ? argv[1] : "", ": timed out after ", timeout_s, " s");
    }
    struct pollfd pf{r.get(), POLLIN, 0};
    int n = ::poll(&pf, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = ::read(r.get(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    c.out.append(buf, got);
  }
  child.wait();
  c.status = child.status();
  return c;
}

}  // namespace thaw::runtime
