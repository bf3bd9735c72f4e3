// The `thaw` command: the engine's subcommands and the function runtime's,
// one file each (commands.h). `thaw __init` and `thaw __restore-shell` are
// not for users: the runtime starts them, as a container's first process and
// as the process that forks restores of one snapshot.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <vector>

#include "cli/commands.h"
#include "container/init.h"
#include "container/restore_shell.h"
#include "container/spawn.h"

int main(int argc, char** argv) {
  thaw::container::grow_fd_table_for_spawn();  // before any thread exists
  if (argc >= 2 && std::strcmp(argv[1], "__init") == 0) return thaw::container::init_main(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "__restore-shell") == 0)
    return thaw::container::restore_shell_main(argc, argv);

  CLI::App app{"thaw: memory snapshots of Linux processes, and functions that start from them"};
  app.require_subcommand(1);
  app.set_version_flag("--version", THAW_VERSION);
  std::vector<thaw::cli::Command> commands;
  thaw::cli::add_engine_commands(app, commands);
  commands.push_back(thaw::cli::add_template(app));
  commands.push_back(thaw::cli::add_deploy(app));
  commands.push_back(thaw::cli::add_run(app));
  commands.push_back(thaw::cli::add_serve(app));
  commands.push_back(thaw::cli::add_call(app));
  commands.push_back(thaw::cli::add_app(app));
  commands.push_back(thaw::cli::add_snapshot(app));
  commands.push_back(thaw::cli::add_proxy_auth(app));
  commands.push_back(thaw::cli::add_secret(app));
  commands.push_back(thaw::cli::add_volume(app));

  // `thaw run TARGET -- --name value`: CLI11 would take what follows the
  // `--` as positionals of `run` and refuse them; without it they reach the
  // entrypoint as they are (run.cpp: everything after the target is its).
  std::vector<char*> args(argv, argv + argc);
  if (args.size() > 3 && std::strcmp(args[1], "run") == 0 && args[2][0] != '-' && std::strcmp(args[3], "--") == 0)
    args.erase(args.begin() + 3);
  argc = static_cast<int>(args.size());
  argv = args.data();
  CLI11_PARSE(app, argc, argv);
  try {
    for (auto& c : commands)
      if (*c.sub) return c.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thaw: %s\n", e.what());
    return 1;
  }
  return 0;
}
