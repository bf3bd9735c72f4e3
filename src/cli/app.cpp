// thaw app ls | thaw app stop APP
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/session.h"
#include "common/error.h"
#include "container/fsutil.h"
#include "runtime/snapshot_key.h"

namespace thaw::cli {

namespace {

int list_apps(Session& s) {
  auto& store = s.ctx.store;
  std::printf("%-24s %-8s %-9s %-20s %s\n", "APP", "VERSION", "STATE", "DEPLOYED", "FUNCTIONS");
  for (const auto& app : store.apps()) {
    auto versions = store.versions(app);
    if (versions.empty()) continue;
    auto current = store.current_version(app);
    int v = current.value_or(versions.back());
    std::string deployed, fns;
    try {
      auto rec = store.read_version(app, v);
      deployed = rec.value("deployed", "");
      const nlohmann::json functions = rec.value("functions", nlohmann::json::object());
      for (const auto& [fn, f] : functions.items())
        fns += (fns.empty() ? "" : ", ") + fn + (f.value("snapshot", false) ? " (snapshot)" : "");
    } catch (const std::exception& e) {
      fns = std::string("? (") + e.what() + ")";
    }
    std::printf("%-24s %-8s %-9s %-20s %s\n", app.c_str(), cat("v", v).c_str(), current ? "deployed" : "stopped",
                deployed.c_str(), fns.c_str());
  }
  return 0;
}

int stop_app(Session& s, const std::string& app) {
  auto& store = s.ctx.store;
  runtime::check_name("app", app);
  auto lock = store.lock_app(app);
  auto current = store.current_version(app);
  if (!current) fail("app '", app, "' is not deployed");
  auto rec = store.read_version(app, *current);
  store.stop_app(app);
  // Its snapshots would only be used again by a deploy of the same code,
  // which recreates them.
  const nlohmann::json functions = rec.value("functions", nlohmann::json::object());
  for (const auto& [fn, f] : functions.items()) {
    if (!f.value("snapshot", false)) continue;
    std::string key = runtime::snapshot_key(f.at("key_inputs"), s.ctx.fingerprint);
    if (!container::exists(store.snapshot_dir(key))) continue;
    auto klock = store.lock_snapshot(key);
    store.remove_snapshot(key);
    s.log.line("Removed memory snapshot " + key.substr(0, 12) + " (" + app + "." + fn + ").");
  }
  // And those made for handles with other settings (Cls.with_options):
  // their meta.json names the app.
  for (const auto& key : store.snapshot_keys()) {
    auto meta = store.read_meta(key);
    if (!meta || !meta->is_object() || !(*meta)["app"].is_string() || (*meta)["app"].get<std::string>() != app)
      continue;
    auto klock = store.lock_snapshot(key);
    store.remove_snapshot(key);
    s.log.line("Removed memory snapshot " + key.substr(0, 12) + " (" + app + "." +
               meta->value("function", std::string("?")) + ", a handle's).");
  }
  std::printf("Stopped app %s (version %d).\n", app.c_str(), *current);
  return 0;
}

}  // namespace

Command add_app(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("app", "Deployed apps");
  sub->require_subcommand(1);
  auto* ls = sub->add_subcommand("ls", "List deployed apps");
  auto* stop = sub->add_subcommand("stop", "Stop a deployed app (calls to it fail until it is deployed again)");
  stop->add_option("app", *name, "the app")->required();
  return {sub, [ls, stop, name] {
            Session s;
            if (*ls) return list_apps(s);
            if (*stop) return stop_app(s, *name);
            return 1;
          }};
}

}  // namespace thaw::cli
