// thaw deploy app.py
#include <memory>

#include "cli/commands.h"
#include "cli/session.h"
#include "runtime/deploy.h"

namespace thaw::cli {

Command add_deploy(CLI::App& app) {
  auto o = std::make_shared<runtime::DeployOptions>();
  auto* sub = app.add_subcommand("deploy", "Deploy an app: store a new version and create its memory snapshots");
  sub->add_option("app_file", o->file, "the app's Python file")->required();
  return {sub, [o] {
            Session s;
            return runtime::deploy(*s.rt, *o);
          }};
}

}  // namespace thaw::cli
