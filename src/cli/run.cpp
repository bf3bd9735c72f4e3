// thaw run app.py[::entrypoint]: the app as an ephemeral app (no snapshots)
// served on a private socket, and its local entrypoint run against it.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <memory>

#include "cli/commands.h"
#include "cli/interrupts.h"
#include "cli/session.h"
#include "common/error.h"
#include "container/spawn.h"
#include "runtime/introspect.h"
#include "runtime/server.h"

namespace thaw::cli {

Command add_run(CLI::App& app) {
  auto spec = std::make_shared<std::string>();
  auto* sub = app.add_subcommand(
      "run", "Run an app's local entrypoint against an ephemeral app (no snapshots); arguments after it go to the entrypoint");
  sub->add_option("target", *spec, "app.py or app.py::entrypoint")->required();
  // Everything after the target is the entrypoint's (--name value ...).
  sub->prefix_command();
  return {sub, [sub, spec] {
            auto args = std::make_shared<std::vector<std::string>>(sub->remaining());
            if (!args->empty() && args->front() == "--") args->erase(args->begin());
            std::string file = *spec, entry;
            if (auto pos = spec->find("::"); pos != std::string::npos) {
              file = spec->substr(0, pos);
              entry = spec->substr(pos + 2);
            }
            // A signal cancels the calls in flight (cli/interrupts.h) and
            // goes on to the entrypoint (KeyboardInterrupt there), unless
            // it came from the terminal, which sent it there already; a
            // second one kills it. When it ends, everything stops.
            std::atomic<pid_t> entry_pid{0};
            CallInterrupts interrupts("thaw run", [&](const SignalWatcher::Signal& sig, bool forced) {
              pid_t pid = entry_pid;
              if (pid <= 0) return;
              if (forced)
                ::kill(pid, SIGKILL);
              else if (!sig.from_terminal)
                ::kill(pid, sig.number);
            });
            Session s;
            auto watching = interrupts.watch(*s.rt, s.ctx.live);
            std::string abs = runtime::absolute_app_file(file);
            auto desc = runtime::introspect(s.ctx, abs);
            s.rt->add_ephemeral(desc);
            auto server = std::make_unique<runtime::PrivateServer>(*s.rt);
            s.ctx.socket_path = server->path();
            s.log.line("Running app " + desc.name + " (ephemeral: no memory snapshots).");

            auto env = runtime::user_python_env(s.ctx);
            container::set_env(env, "THAW_RUNTIME_SOCKET", s.ctx.socket_path);
            container::set_env(env, "THAW_APP_MODE", "ephemeral");
            container::SpawnOptions so;
            so.argv = {s.ctx.python, "-m", "thaw._entrypoint", abs};
            if (!entry.empty()) so.argv.push_back(entry);
            if (!args->empty()) {
              so.argv.push_back("--");
              so.argv.insert(so.argv.end(), args->begin(), args->end());
            }
            so.env = env;
            so.fds = {{0, 0}, {1, 1}, {2, 2}};
            int status = 1;
            try {
              if (interrupts.signal()) fail("interrupted before the entrypoint started");
              auto child = container::spawn(so);
              entry_pid = child.pid();
              child.wait();
              entry_pid = 0;
              status = child.status();
            } catch (const std::exception& e) {
              s.log.line(std::string("thaw: ") + e.what());
            }
            server.reset();  // waits for the calls in flight (cancelled, if interrupted)
            s.rt->shutdown();
            return interrupts.exit_status(status);
          }};
}

}  // namespace thaw::cli
