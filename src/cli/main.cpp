// The `thaw` command.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "common/error.h"
#include "engine/engine.h"

namespace {

std::map<int, int> parse_inherit(const std::vector<std::string>& specs) {
  std::map<int, int> out;
  for (const auto& s : specs) {
    auto eq = s.find('=');
    try {
      if (eq == std::string::npos) throw std::invalid_argument(s);
      out[std::stoi(s.substr(0, eq))] = std::stoi(s.substr(eq + 1));
    } catch (const std::exception&) {
      thaw::fail("--inherit-fd ", s, ": expected N=M (fd N of the image gets our fd M)");
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"thaw: memory snapshots of Linux processes"};
  app.require_subcommand(1);
  app.set_version_flag("--version", THAW_VERSION);

  thaw::engine::CheckpointOptions co;
  bool quiet = false;
  auto* cp = app.add_subcommand("checkpoint", "Capture a running process (all threads) into an image directory");
  cp->add_option("--pid,-p", co.pid, "process to capture")->required();
  cp->add_option("--out,-o", co.out, "image directory to create")->required();
  cp->add_flag("--kill", co.kill, "kill the process once the image is safely written");
  cp->add_flag("--quiet,-q", quiet, "print nothing on success");

  thaw::engine::RestoreOptions ro;
  std::vector<std::string> inherit;
  bool stats = false;
  auto* rs = app.add_subcommand("restore", "Bring a process back from an image; waits for it unless --detach");
  rs->add_option("dir", ro.dir, "image directory")->required();
  rs->add_option("--inherit-fd", inherit, "N=M: give the restored process our fd M as its fd N");
  rs->add_flag("--detach,-d", ro.detach, "return once the process runs; print its pid");
  rs->add_option("--pidfile", ro.pidfile, "write the restored process's pid here");
  rs->add_flag("--stats", stats, "print how long the restore took to stderr");

  std::string idir;
  bool as_json = false;
  auto* in = app.add_subcommand("inspect", "Show what an image holds");
  in->add_option("dir", idir, "image directory")->required();
  in->add_flag("--json", as_json, "machine-readable output");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*cp) {
      auto st = thaw::engine::checkpoint(co);
      if (!quiet)
        std::fprintf(stderr,
                     "checkpoint: pid %d -> %s: %zu threads, %zu mappings, %zu fds, %.1f MiB page data; "
                     "stopped %.1f ms, collected %.1f ms, written %.1f ms, total %.1f ms\n",
                     co.pid, co.out.c_str(), st.threads, st.vmas, st.fds, st.pages_bytes / 1048576.0, st.seize_ms,
                     st.dump_ms, st.write_ms, st.total_ms);
      return 0;
    }
    if (*rs) {
      ro.inherit = parse_inherit(inherit);
      ro.on_running = [&](const thaw::engine::RestoreResult& r) {
        if (stats || ro.detach)
          std::fprintf(stderr,
                       "restore: %s running as pid %d after %.1f ms (image %.1f, setup %.1f, memory %.1f, "
                       "threads %.1f, registers %.1f)\n",
                       ro.dir.c_str(), r.host_pid, r.ready_ms, r.load_ms, r.setup_ms, r.memory_ms, r.threads_ms,
                       r.finish_ms);
        if (ro.detach) std::printf("%d\n", r.host_pid);
        std::fflush(nullptr);
      };
      auto r = thaw::engine::restore(ro);
      if (ro.detach) return 0;
      return r.exit_status;
    }
    if (*in) {
      std::cout << thaw::engine::inspect(idir, as_json);
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thaw: %s\n", e.what());
    return 1;
  }
  return 0;
}
