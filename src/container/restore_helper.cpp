#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>

#include "common/error.h"
#include "container/cgroup.h"
#include "container/init.h"
#include "container/mounts.h"
#include "container/spec.h"
#include "engine/engine.h"

namespace thaw::container {

namespace {

constexpr int kRestoreFailed = 70;

void report(const nlohmann::json& j) {
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

}  // namespace

int restore_main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: thaw __restore SPEC_JSON\n");
    return 2;
  }
  try {
    Spec spec = spec_from_json(nlohmann::json::parse(argv[2]));
    if (spec.image.empty()) fail("no image");
    join_cgroups(spec.cgroups);
    engine::RestoreOptions o;
    o.dir = spec.image;
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

}  // namespace thaw::container
