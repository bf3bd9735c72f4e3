// thaw deploy app.py
#include <memory>

#include "cli/commands.h"
#include "cli/interrupts.h"
#include "cli/session.h"
#include "runtime/deploy.h"

namespace thaw::cli {

Command add_deploy(CLI::App& app) {
  auto o = std::make_shared<runtime::DeployOptions>();
  auto* sub = app.add_subcommand("deploy", "Deploy an app: store a new version and create its memory snapshots");
  sub->add_option("app_file", o->file, "the app's Python file")->required();
  return {sub, [o] {
            // Ctrl-C stops the snapshot container starting or running
            // (cli/interrupts.h): the version is recorded as failed.
            CallInterrupts interrupts("thaw deploy");
            Session s;
            auto watching = interrupts.watch(*s.rt, s.ctx.live);
            int rc = runtime::deploy(*s.rt, *o);
            return rc == 0 ? 0 : interrupts.exit_status(rc);
          }};
}

}  // namespace thaw::cli
