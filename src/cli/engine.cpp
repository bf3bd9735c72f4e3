// thaw checkpoint | restore | inspect: the engine on its own.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "common/error.h"
#include "common/interrupt.h"
#include "engine/engine.h"

namespace thaw::cli {

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

Command add_checkpoint(CLI::App& app) {
  struct Opts {
    engine::CheckpointOptions co;
    bool quiet = false;
    double wait_s = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cp = app.add_subcommand("checkpoint", "Capture a running process (all threads, and its running child processes) into an image directory");
  cp->add_option("--pid,-p", o->co.pid, "process to capture, with its descendants")->required();
  cp->add_option("--out,-o", o->co.out, "image directory to create")->required();
  cp->add_flag("--kill", o->co.kill, "kill the process once the image is safely written");
  cp->add_flag_callback("--no-cow", [o] { o->co.copy_on_write = false; },
               "hold the process while its pages are read, instead of reading them from a copy-on-write fork");
  cp->add_flag("--tcp-close", o->co.tcp_close,
               "record established TCP connections as closed instead of refusing them: after a restore they "
               "read as connections the peer dropped (ECONNRESET), which clients that reconnect handle");
  cp->add_flag("--drop-outside", o->co.drop_outside,
               "record pipes and unix sockets connected to other processes (fds above 2) as dropped instead of "
               "leaving them for --inherit-fd at restore: they come back as if the other process had closed its "
               "end (EOF, EPIPE)");
  cp->add_option("--wait", o->wait_s,
                 "when the checkpoint is refused for a passing state (a connection not accepted yet, an fd in "
                 "flight, a child between vfork and exec), take it again, a little later each time, for up to "
                 "this many seconds")
      ->check(CLI::Range(0.0, 3600.0));
  cp->add_flag("--quiet,-q", o->quiet, "print nothing on success");
  return {cp, [o] {
            // Ctrl-C and SIGTERM wait for a safe point and unwind there (the
            // target back as it was, no image); the error is printed before
            // they are let through, and then end thaw as usual.
            HeldSignals held;
            engine::CheckpointStats st;
            auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o->wait_s);
            for (auto pause = std::chrono::milliseconds(100);; pause = std::min(pause * 2, std::chrono::milliseconds(1000))) {
              try {
                st = engine::checkpoint(o->co);
                break;
              } catch (const std::exception& e) {
                if (!engine::passing_state(e.what()) || std::chrono::steady_clock::now() + pause > until) {
                  std::fprintf(stderr, "thaw: %s\n", e.what());
                  return 1;
                }
                if (!o->quiet) std::fprintf(stderr, "thaw: %s; trying again\n", e.what());
              }
              std::this_thread::sleep_for(pause);
              try {
                throw_if_interrupted();
              } catch (const std::exception& e) {
                std::fprintf(stderr, "thaw: %s\n", e.what());
                return 1;
              }
            }
            // Even with --quiet: each says what the image left out.
            for (const auto& n : st.notes) std::fprintf(stderr, "thaw: note: checkpoint: %s\n", n.c_str());
            if (!o->quiet)
              std::fprintf(stderr,
                           "checkpoint: pid %d -> %s: %s%zu threads, %zu mappings, %zu fds, %.1f MiB page data; "
                           "stopped %.1f ms, collected %.1f ms, written %.1f ms, total %.1f ms; process held "
                           "%.1f ms%s\n",
                           o->co.pid, o->co.out.c_str(),
                           st.processes > 1 ? cat(st.processes, " processes, ").c_str() : "", st.threads, st.vmas,
                           st.fds, st.pages_bytes / 1048576.0,
                           st.seize_ms, st.dump_ms, st.write_ms, st.total_ms, st.stopped_ms,
                           st.pages_from.empty() ? "" : (" (pages read from " + st.pages_from + ")").c_str());
            // The image is committed (and with --kill the target gone): a
            // Ctrl-C or SIGTERM that came during the write is too late to
            // stop it, and thaw's status says it succeeded.
            held.discard_pending();
            if (!o->quiet && st.gpu_bytes)
              std::fprintf(stderr, "checkpoint: GPU state %.1f MiB moved to host memory by the driver in %.1f ms (%s)\n",
                           st.gpu_bytes / 1048576.0, st.gpu_ms, st.gpu_detail.c_str());
            return 0;
          }};
}

Command add_restore(CLI::App& app) {
  struct Opts {
    engine::RestoreOptions ro;
    std::vector<std::string> inherit;
    bool stats = false;
    std::string from_template;
  };
  auto o = std::make_shared<Opts>();
  auto* rs = app.add_subcommand("restore", "Bring a process back from an image; waits for it unless --detach");
  rs->add_option("dir", o->ro.dir, "image directory");
  rs->add_option("--from-template", o->from_template,
                 "restore a copy of the live template served on this socket (thaw template) instead of reading "
                 "an image");
  rs->add_option("--inherit-fd", o->inherit, "N=M: give the restored process our fd M as its fd N");
  rs->add_flag("--detach,-d", o->ro.detach, "return once the process runs; print its pid");
  rs->add_option("--pidfile", o->ro.pidfile, "write the restored process's pid here");
  rs->add_flag("--private-shm", o->ro.private_shm,
               "give the process an empty /dev/shm of its own: its named semaphores and shared memory come from "
               "the image, shared with no other restore");
  rs->add_flag("--stats", o->stats, "print how long the restore took to stderr");
  rs->add_flag_callback("--eager", [o] { o->ro.lazy = false; },
               "fill all memory before the process runs (default: large anonymous mappings are filled "
               "while it runs)");
  rs->add_flag_callback("--lazy-faults-only", [o] { o->ro.lazy_background = false; },
               "fill lazily restored memory only where the process touches it, nothing in the background "
               "(for tests and diagnosis)");
  rs->add_flag("--gpu-lazy", o->ro.gpu_lazy,
               "for an image with GPU state: restore its memory lazily too, the driver's restore running while "
               "the memory comes in (default: all memory first, then the driver)");
  rs->add_flag_callback("--no-working-set", [o] { o->ro.working_set = false; },
               "neither copy first the blocks earlier restores of this image touched (the image's "
               "working-set file) nor add to that file");
  return {rs, [o] {
            auto& ro = o->ro;
            ro.inherit = parse_inherit(o->inherit);
            if (o->from_template.empty() == ro.dir.empty())
              thaw::fail("restore: give an image directory or --from-template SOCKET (one of them)");
            if (!o->from_template.empty() && ro.private_shm)
              thaw::fail("restore: --private-shm is for restores from an image; a template's copies share its mappings");
            if (!o->from_template.empty())
              return restore_from_template(o->from_template, ro.inherit, o->stats, ro.detach);
            // Ctrl-C or SIGTERM before the process runs stops the restore
            // cleanly (no half-restored process left parked); from then on
            // they act as before.
            auto held = std::make_shared<std::optional<HeldSignals>>();
            held->emplace();
            ro.stop_on_interrupt = true;
            ro.on_running = [o, held](const engine::RestoreResult& r) {
              held->reset();
              if (o->stats || o->ro.detach)
                std::fprintf(stderr,
                             "restore: %s running as pid %d after %.1f ms (image %.1f, setup %.1f, memory %.1f, "
                             "threads %.1f, registers %.1f)\n",
                             o->ro.dir.c_str(), r.host_pid, r.ready_ms, r.load_ms, r.setup_ms, r.memory_ms,
                             r.threads_ms, r.finish_ms);
              if ((o->stats || o->ro.detach) && r.gpu_ms > 0)
                std::fprintf(stderr, "restore: GPU state restored and unlocked in %.1f ms (part of registers; %s)\n",
                             r.gpu_ms, r.gpu_detail.c_str());
              if (o->ro.detach) std::printf("%d\n", r.host_pid);
              std::fflush(nullptr);
            };
            engine::RestoreResult r;
            try {
              r = engine::restore(ro);
            } catch (const std::exception& e) {
              // Printed before a held signal is let through (and ends thaw).
              std::fprintf(stderr, "thaw: %s\n", e.what());
              return 1;
            }
            held->reset();
            if (ro.detach) return 0;
            const auto& pg = r.pager;
            if (!pg.ok) std::fprintf(stderr, "thaw: restore: %s\n", engine::kPagerFailed);
            if (o->stats && r.lazy_bytes)
              std::fprintf(stderr,
                           "restore: lazy memory %.1f MiB: %llu faults (%llu for zero pages, %llu ahead of the "
                           "working set's copy) brought %.1f MiB, "
                           "the working set %.1f MiB, the background %.1f MiB, %.1f MiB dropped by the process, "
                           "%u forks; all in after %.1f ms\n",
                           r.lazy_bytes / 1048576.0, (unsigned long long)pg.faults,
                           (unsigned long long)pg.zero_faults, (unsigned long long)pg.early_faults,
                           pg.fault_bytes / 1048576.0,
                           pg.prefetch_bytes / 1048576.0, pg.background_bytes / 1048576.0,
                           pg.dropped_bytes / 1048576.0, pg.forks, pg.done_ms);
            return r.exit_status;
          }};
}

Command add_inspect(CLI::App& app) {
  struct Opts {
    std::string dir;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* in = app.add_subcommand("inspect", "Show what an image holds");
  in->add_option("dir", o->dir, "image directory")->required();
  in->add_flag("--json", o->json, "machine-readable output");
  return {in, [o] {
            std::cout << engine::inspect(o->dir, o->json);
            return 0;
          }};
}

}  // namespace

void add_engine_commands(CLI::App& app, std::vector<Command>& out) {
  out.push_back(add_checkpoint(app));
  out.push_back(add_restore(app));
  out.push_back(add_inspect(app));
}

}  // namespace thaw::cli
