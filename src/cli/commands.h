// The `thaw` subcommands, one file each. Each add_* registers its
// subcommand (and options) with the app and returns what to run when the
// user picks it.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace thaw::cli {

struct Command {
  CLI::App* sub;
  std::function<int()> run;
};

// Engine: checkpoint, restore, inspect (engine.cpp).
void add_engine_commands(CLI::App& app, std::vector<Command>& out);
// thaw template (template.cpp), and the client side of its restores.
Command add_template(CLI::App& app);
int restore_from_template(const std::string& socket, const std::map<int, int>& inherit, bool stats, bool detach);
// Function runtime.
Command add_deploy(CLI::App& app);
Command add_run(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_call(CLI::App& app);
Command add_app(CLI::App& app);
Command add_snapshot(CLI::App& app);
Command add_proxy_auth(CLI::App& app);
Command add_secret(CLI::App& app);
Command add_volume(CLI::App& app);

}  // namespace thaw::cli
