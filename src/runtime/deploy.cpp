#include "runtime/deploy.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "common/error.h"
#include "container/fsutil.h"
#include "runtime/disk_full.h"
#include "runtime/introspect.h"
#include "runtime/schedule.h"
#include "runtime/serialized_files.h"
#include "runtime/web_front.h"
#include "runtime/snapshot_key.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

// Copies the app file and its local modules under code/, keeping their
// layout relative to the app file's directory. Returns the copy of the app file.
std::string copy_code(Context& ctx, const AppDesc& app, const std::string& code_dir) {
  std::string dir = app.file.substr(0, app.file.rfind('/') + 1);
  std::string app_copy = code_dir + "/" + app.file.substr(dir.size());
  container::copy_file(app.file, app_copy);
  for (const auto& m : app.local_modules) {
    if (m.rfind(dir, 0) != 0) {
      ctx.log.line("Warning: local module " + m + " is outside the app's directory; it is not copied with the app.");
      continue;
    }
    container::copy_file(m, code_dir + "/" + m.substr(dir.size()));
  }
  return app_copy;
}

// Keys of the snapshots a version uses, on this machine.
std::set<std::string> keys_of(const Context& ctx, const json& record) {
  std::set<std::string> keys;
  const json functions = record.value("functions", json::object());
  for (const auto& [fn, f] : functions.items())
    if (f.value("snapshot", false)) keys.insert(snapshot_key(f.at("key_inputs"), ctx.fingerprint));
  return keys;
}

// Runs fn, which stores version `version`; a full disk fails the deploy
// with what to do about it.
template <typename Fn>
auto with_disk_advice(Context& ctx, int version, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    if (!is_disk_full(e.what())) throw;
    fail("could not store version ", version, ": ", e.what(), "; ", disk_full_advice(ctx.store.home()));
  }
}

// A version's directory until its record is written: a deploy that fails
// before then (a full disk, a module it cannot read) removes it again, so
// that no version without a record is left for `thaw app history` to list
// as broken for good. Nothing refers to it yet (it was never current).
class VersionDraft {
 public:
  explicit VersionDraft(std::string dir) : dir_(std::move(dir)) {}
  ~VersionDraft() {
    if (dir_.empty()) return;
    try {
      container::remove_tree(dir_);
    } catch (const std::exception&) {
    }
  }
  VersionDraft(const VersionDraft&) = delete;
  VersionDraft& operator=(const VersionDraft&) = delete;
  void keep() { dir_.clear(); }

 private:
  std::string dir_;
};

}  // namespace

int deploy(Runtime& rt, const DeployOptions& o) {
  Context& ctx = rt.context();
  std::string file = absolute_app_file(o.file);
  // The pickles introspection writes (serialized=True) are named by no
  // record until the version's is written: no sweep removes them meanwhile.
  DeployingSerialized deploying(ctx.store);
  ctx.log.line("Inspecting " + file + "…");
  AppDesc app = introspect(ctx, file);
  app.file = file;
  if (!o.name.empty()) app.name = o.name;
  check_name("app", app.name);
  auto lock = ctx.store.lock_app(app.name);
  // A schedule the runtime could not run fails the deploy, not `thaw serve` later.
  for (const auto& f : app.functions) {
    try {
      if (auto s = Schedule::from_config(f.config)) s->next_after(std::time(nullptr));
    } catch (const std::exception& e) {
      fail(f.name, ": ", e.what());
    }
  }
  auto previous = ctx.store.current_version(app.name);
  int version = ctx.store.next_version(app.name);
  std::string vdir = ctx.store.version_dir(app.name, version);
  auto under_way = ctx.store.mark_deploying(app.name, version);
  VersionDraft draft(vdir);
  ctx.log.line("Deploying app " + app.name + " version " + std::to_string(version) + " (" +
               std::to_string(app.functions.size()) + " functions).");

  json code = hash_code(app);
  std::string app_copy = with_disk_advice(ctx, version, [&] { return copy_code(ctx, app, vdir + "/code"); });
  json functions = json::object();
  for (const auto& f : app.functions) {
    if (f.gpu_snapshot() && !f.gpu().empty() && ctx.fingerprint.gpu.empty())
      ctx.log.line("Warning: " + f.name + ": enable_gpu_snapshot is set but this machine has no NVIDIA GPU; the " +
                   "snapshot holds CPU state only and the GPU (if any) is attached after the restore.");
    else if (f.gpu_snapshot() && !f.gpu().empty())
      ctx.log.line(f.name + ": GPU snapshot: the snapshot phase has the GPU and the snapshot holds its memory (" +
                   ctx.fingerprint.gpu + ").");
    functions[f.name] = {{"kind", f.kind}, {"snapshot", f.memory_snapshot()}, {"key_inputs", key_inputs(app, f, code)}};
  }
  json record = {{"app", app.name},         {"version", version},        {"deployed", utc_now_iso()},
                 {"source_file", file},     {"app_file", app_copy},      {"code_dir", vdir + "/code"},
                 {"code", code},            {"introspection", app.raw},  {"functions", functions}};
  if (!o.source_file.empty()) record["source_file"] = o.source_file;
  if (o.rollback_of > 0) record["rollback_of"] = o.rollback_of;
  // Until the deploy finishes: one killed (SIGKILL, a crash, the machine
  // going down) leaves this, so that `thaw app history` does not list it
  // as an ordinary earlier version and rollbacks pass it by.
  record["unfinished"] = true;
  with_disk_advice(ctx, version, [&] { ctx.store.write_version(app.name, version, record); });
  draft.keep();

  std::vector<std::string> summary;
  for (const auto& f : app.functions) {
    if (!f.memory_snapshot()) {
      summary.push_back(cat("  ", f.name, " (", f.kind, "): no memory snapshot"));
      continue;
    }
    Target t;
    t.app = app.name;
    t.version = version;
    t.app_file = app_copy;
    t.cwd = vdir + "/code";
    t.fn = f;
    t.key = snapshot_key(functions[f.name]["key_inputs"], ctx.fingerprint);
    auto t0 = std::chrono::steady_clock::now();
    try {
      bool created = rt.snapshots().ensure(t, true);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      summary.push_back(cat("  ", f.name, " (", f.kind, "): memory snapshot ", t.key.substr(0, 12),
                            created ? " created in " + format_duration(s) : " (unchanged)"));
    } catch (const CheckpointRefused& e) {
      bool full = is_disk_full(e.what());
      ctx.log.line(cat("Warning: the memory snapshot of ", t.label(), " could not be ", full ? "written" : "taken", ": ",
                       e.what()));
      ctx.log.line("  The function is deployed and cold-starts without a snapshot.");
      summary.push_back(cat("  ", f.name, " (", f.kind, "): no memory snapshot (",
                            full ? "no space left under THAW_HOME" : "checkpoint refused", ")"));
    } catch (const std::exception& e) {
      // An interrupted deploy stopped the container: that is the reason, not
      // how the container ended.
      std::string why = rt.cancelled_why();
      if (why.empty()) why = e.what();
      ctx.log.line(cat("Error: ", t.label(), " failed while preparing its snapshot: ", why));
      ctx.log.line("Deploy failed; version " + std::to_string(version) + " was not made current.");
      // So that `thaw app history` tells it apart and rollbacks pass it by.
      record["failed"] = why;
      try {
        ctx.store.write_version(app.name, version, record);
      } catch (const std::exception&) {
      }
      return 1;
    }
  }
  record.erase("unfinished");
  with_disk_advice(ctx, version, [&] {
    ctx.store.write_version(app.name, version, record);
    ctx.store.set_current(app.name, version);
  });

  if (previous) {
    try {
      auto keep = keys_of(ctx, record);
      std::map<std::string, int> old;  // key -> its version
      for (const auto& key : keys_of(ctx, ctx.store.read_version(app.name, *previous))) old[key] = *previous;
      // Snapshots of this app whose key no version computes any more (made
      // under another machine fingerprint: a kernel, Python, thaw or SDK
      // since replaced) would otherwise stay on disk for good.
      for (const auto& key : ctx.store.snapshot_keys()) {
        auto meta = ctx.store.read_meta(key);
        if (!meta || !meta->is_object() || old.count(key)) continue;
        const json& app_name = (*meta)["app"];
        const json& v = (*meta)["version"];
        // Deployed snapshots of this app only (they carry their version).
        if (app_name.is_string() && app_name.get<std::string>() == app.name && v.is_number_integer())
          old[key] = v.get<int>();
      }
      for (const auto& [key, v] : old)
        if (!keep.count(key) && container::exists(ctx.store.snapshot_dir(key))) {
          auto lock_key = ctx.store.lock_snapshot(key);
          ctx.store.remove_snapshot(key);
          ctx.log.line(cat("Retired memory snapshot ", key.substr(0, 12), " of version ", v, "."));
        }
    } catch (const std::exception& e) {
      ctx.log.line(std::string("Warning: could not retire the previous version's snapshots: ") + e.what());
    }
  }
  std::printf("Deployed app %s version %d.\n", app.name.c_str(), version);
  for (const auto& l : summary) std::printf("%s\n", l.c_str());
  for (const auto& f : app.functions)
    if (auto s = Schedule::from_config(f.config))
      std::printf("  %s: runs on %s while `thaw serve` runs\n", f.name.c_str(), s->describe().c_str());
  for (const auto& [segment, route] : web_routes(app))
    std::printf("  %s: web endpoint at http://ADDRESS/%s/%s while `thaw serve --http ADDRESS` runs\n",
                route.method ? cat(route.function, ".", *route.method).c_str() : route.function.c_str(),
                app.name.c_str(), segment.c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace thaw::runtime
