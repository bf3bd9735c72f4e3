// thaw app ls | stop APP | history APP | rollback APP [VERSION] | logs APP [-f] [-n N]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <memory>

#include "cli/commands.h"
#include "cli/session.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "container/fsutil.h"
#include "runtime/deploy.h"
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

// "v3" or "3" -> 3.
int parse_version(const std::string& text) {
  std::string digits = !text.empty() && (text[0] == 'v' || text[0] == 'V') ? text.substr(1) : text;
  if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit) ||
      std::stoi(digits) < 1)
    fail("version '", text, "': give a version number as `thaw app history` lists it (v3, or 3)");
  return std::stoi(digits);
}

int app_history(Session& s, const std::string& app) {
  auto& store = s.ctx.store;
  runtime::check_name("app", app);
  auto versions = store.versions(app);
  if (versions.empty()) fail("app '", app, "' was never deployed (`thaw app ls` lists the apps)");
  auto current = store.current_version(app);
  // The newest version, not current, while its deploy runs (its record
  // may not be written yet).
  bool deploying = current != versions.back() && store.deploying(app, versions.back());
  std::printf("%-8s %-20s %-9s %s\n", "VERSION", "DEPLOYED", "STATE", "NOTE");
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    std::string deployed, state = current == *it ? "deployed" : "", note;
    if (deploying && *it == versions.back()) {
      std::printf("%-8s %-20s %-9s %s\n", cat("v", *it).c_str(), "", "deploying", "a deploy is under way");
      continue;
    }
    try {
      auto rec = store.read_version(app, *it);
      deployed = rec.value("deployed", "");
      if (rec.contains("failed")) {
        state = "failed";
        note = rec.value("failed", "");
      } else if (rec.contains("unfinished") && current != *it) {
        state = "failed";
        note = "the deploy stopped before it finished (killed?)";
      } else if (rec.value("rollback_of", 0) > 0) {
        note = cat("rollback to v", rec.value("rollback_of", 0));
      }
    } catch (const std::exception& e) {
      state = "broken";
      note = e.what();  // a deploy that stopped before it wrote its record
    }
    std::printf("%-8s %-20s %-9s %s\n", cat("v", *it).c_str(), deployed.c_str(), state.c_str(), note.c_str());
  }
  return 0;
}

// Deploys again the code a previous version stored, as a new version (as
// Modal does): its snapshots are found again when they are still on disk
// (same code, same key), else created.
int rollback_app(Session& s, const std::string& app, const std::string& version_text) {
  auto& store = s.ctx.store;
  runtime::check_name("app", app);
  auto versions = store.versions(app);
  if (versions.empty()) fail("app '", app, "' was never deployed (`thaw app ls` lists the apps)");
  auto current = store.current_version(app);
  auto usable = [&](int v) {
    try {
      auto rec = store.read_version(app, v);
      return !rec.contains("failed") && !rec.contains("unfinished") && rec.contains("app_file");
    } catch (const std::exception&) {
      return false;
    }
  };
  int target = 0;
  if (!version_text.empty()) {
    target = parse_version(version_text);
    if (!std::count(versions.begin(), versions.end(), target))
      fail("app '", app, "' has no version v", target, " (`thaw app history ", app, "` lists them)");
    if (current == target) fail("v", target, " of app '", app, "' is the deployed version already");
    if (!usable(target))
      fail("v", target, " of app '", app, "' never finished deploying; pick another (`thaw app history ", app, "`)");
  } else {
    if (!current)
      fail("app '", app, "' is stopped: name the version to deploy again (`thaw app history ", app, "` lists them)");
    for (auto it = versions.rbegin(); it != versions.rend() && !target; ++it)
      if (*it < *current && usable(*it)) target = *it;
    if (!target) fail("app '", app, "' has no version before v", *current, " to roll back to");
  }
  auto rec = store.read_version(app, target);
  runtime::DeployOptions o;
  o.file = rec.at("app_file").get<std::string>();
  o.name = app;
  o.rollback_of = target;
  o.source_file = rec.value("source_file", "");
  s.log.line(cat("Rolling back app ", app, " to v", target, " (its stored code, ", o.file, ")."));
  return runtime::deploy(*s.rt, o);
}

// Prints the last `lines` lines of the app's log (all with 0); with follow,
// then what is appended, until interrupted (a rotated file is followed
// into its successor).
int app_logs(Session& s, const std::string& app, int lines, bool follow) {
  runtime::check_name("app", app);
  if (s.ctx.store.versions(app).empty()) fail("app '", app, "' was never deployed (`thaw app ls` lists the apps)");
  std::string path = runtime::app_log_path(s.ctx.store, app);
  auto out = [](const char* p, size_t n) {
    if (std::fwrite(p, 1, n, stdout) != n || std::fflush(stdout) != 0) fail_errno("write the log to stdout");
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd && errno != ENOENT) fail_errno("open ", path);
  if (!fd && !follow) {
    std::fprintf(stderr, "No output from app %s yet (its containers' output is kept in %s).\n", app.c_str(),
                 path.c_str());
    return 0;
  }
  off_t pos = 0;
  if (fd) {
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) fail_errno("stat ", path);
    // The tail: at most the last 8 MiB, cut to whole lines.
    off_t from = lines > 0 ? std::max<off_t>(0, st.st_size - (8 << 20)) : 0;
    std::string text(static_cast<size_t>(st.st_size - from), '\0');
    ssize_t n = ::pread(fd.get(), text.data(), text.size(), from);
    if (n < 0) fail_errno("read ", path);
    text.resize(static_cast<size_t>(n));
    pos = from + n;
    size_t start = 0;
    if (lines > 0) {
      size_t end = text.size(), seen = 0;
      if (end > 0 && text[end - 1] == '\n') end--;
      start = end;
      while (start > 0 && seen < static_cast<size_t>(lines)) {
        if (text[start - 1] == '\n' && ++seen == static_cast<size_t>(lines)) break;
        start--;
      }
      if (from > 0 && start == 0) start = text.find('\n') == std::string::npos ? 0 : text.find('\n') + 1;
    }
    out(text.data() + start, text.size() - start);
  }
  if (!follow) return 0;
  char buf[1 << 16];
  for (;;) {
    struct stat now;
    bool exists = ::stat(path.c_str(), &now) == 0;
    struct stat mine;
    if (exists && (!fd || ::fstat(fd.get(), &mine) != 0 || mine.st_ino != now.st_ino || now.st_size < pos)) {
      // Made, rotated or cut: read the new file from its start (after
      // what is left of the old one).
      if (fd)
        for (ssize_t n; (n = ::pread(fd.get(), buf, sizeof buf, pos)) > 0; pos += n) out(buf, n);
      fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      pos = 0;
    }
    if (fd)
      for (ssize_t n; (n = ::pread(fd.get(), buf, sizeof buf, pos)) > 0; pos += n) out(buf, n);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

Command add_app(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("app", "Deployed apps");
  sub->require_subcommand(1);
  auto* ls = sub->add_subcommand("ls", "List deployed apps");
  auto* stop = sub->add_subcommand("stop", "Stop a deployed app (calls to it fail until it is deployed again)");
  stop->add_option("app", *name, "the app")->required();
  auto* history = sub->add_subcommand("history", "List an app's versions, newest first");
  history->add_option("app", *name, "the app")->required();
  auto version = std::make_shared<std::string>();
  auto* rollback = sub->add_subcommand(
      "rollback", "Deploy a previous version's code again, as a new version (default: the one before the deployed one)");
  rollback->add_option("app", *name, "the app")->required();
  rollback->add_option("version", *version, "the version to go back to (v3, or 3)");
  auto* logs = sub->add_subcommand("logs", "Show what a deployed app's containers printed (stdout and stderr)");
  logs->add_option("app", *name, "the app")->required();
  auto lines = std::make_shared<int>(100);
  auto follow = std::make_shared<bool>(false);
  logs->add_option("-n,--lines", *lines, "how many of the last lines to show (0: all)")->check(CLI::NonNegativeNumber);
  logs->add_flag("-f,--follow", *follow, "then show new output as it comes, until interrupted");
  return {sub, [ls, stop, history, rollback, logs, name, version, lines, follow] {
            Session s;
            if (*ls) return list_apps(s);
            if (*stop) return stop_app(s, *name);
            if (*history) return app_history(s, *name);
            if (*rollback) return rollback_app(s, *name, *version);
            if (*logs) return app_logs(s, *name, *lines, *follow);
            return 1;
          }};
}

}  // namespace thaw::cli
