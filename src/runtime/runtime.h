// The runtime proper: resolves (app, function) to a target — a deployed
// version from the store, or an ephemeral app of `thaw run` — and sends
// each call to that target's pool.
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

#include "runtime/app.h"
#include "runtime/call_store.h"
#include "runtime/context.h"
#include "runtime/launcher.h"
#include "runtime/pool.h"
#include "runtime/snapshots.h"
#include "runtime/thread_set.h"

namespace thaw::runtime {

class Runtime {
 public:
  explicit Runtime(Context& ctx)
      : ctx_(ctx), launcher_(ctx), snapshots_(ctx, launcher_), calls_(ctx.store.home()) {}
  ~Runtime() { shutdown(); }
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  Context& context() { return ctx_; }
  Snapshots& snapshots() { return snapshots_; }
  // Spawned calls' results, by FunctionCall id.
  CallStore& calls() { return calls_; }

  // `thaw serve`: pools keep min_containers and buffer_containers running
  // (before the first call is made).
  void set_autoscale(bool on) { autoscale_ = on; }
  // `thaw serve` without --no-warm: versions deployed while it runs get
  // their min_containers too (checked on every tick).
  void set_keep_warm(bool on) { keep_warm_ = on; }
  // `thaw serve`: restores copy a live template of each snapshot
  // (engine/template.h) where the image allows it.
  void set_live_templates(bool on) { launcher_.shells().set_live_templates(on); }

  // `thaw run`: this app's functions are served from its file, without snapshots.
  void add_ephemeral(const AppDesc& app);

  // A call request (docs/runtime-protocol.md) -> its result message.
  // A streamed generator's values go to on_yield as `yield` messages with
  // the request's id.
  // `cancelled`: see Pool::call.
  nlohmann::json call(const nlohmann::json& msg, bool use_snapshot = true, const YieldSink& on_yield = {},
                      const CancelCheck& cancelled = {});
  // A lookup request -> found or error.
  nlohmann::json lookup(const nlohmann::json& msg);
  // An autoscaler request (update_autoscaler) -> updated or error.
  nlohmann::json update_autoscaler(const nlohmann::json& msg);
  // A stats request (Function.get_current_stats) -> stats or error: the
  // function's calls waiting for a container and its containers, in this
  // runtime (runtime/queries.cpp).
  nlohmann::json stats(const nlohmann::json& msg);
  // A lookup_app request (App.lookup) -> found_app, with every function and
  // class of the deployed version, or error.
  nlohmann::json lookup_app(const nlohmann::json& msg);

  // Throws with what is missing and what to do about it.
  // `definition`: a serialized function's introspection entry, sent by the
  // client of an ephemeral app (importing its file may not define it).
  Target resolve(const std::string& app, const std::string& fn, const std::string& mode, const std::string& app_file,
                 const nlohmann::json* definition = nullptr);
  // The deployed target (current version) of app.fn.
  Target resolve_deployed(const std::string& app, const std::string& fn);
  Target ephemeral_target(const AppDesc& app, const FunctionDesc& fn) const;

  // `thaw run` / `thaw call` interrupted (Ctrl-C): every call in flight and
  // every later one is cancelled (answers cancelled:true, with `why` in its
  // error), the containers running or starting for them are stopped. For a
  // runtime about to shut down: there is no undoing it.
  void cancel_all(const std::string& why);
  // Why cancel_all was called; "" if it was not.
  std::string cancelled_why();

  // Starts min_containers for every function of every deployed app.
  void warm_deployed();
  // Scales idle pools down; drops pools of versions no longer deployed.
  void tick();
  // Stops every container. No call may be in flight.
  void shutdown();

 private:
  std::shared_ptr<Pool> pool_for(const Target& t);
  void warm_new_versions();
  const AppDesc& ephemeral_app(const std::string& app, const std::string& app_file);

  Context& ctx_;
  Launcher launcher_;
  Snapshots snapshots_;
  CallStore calls_;
  std::chrono::steady_clock::time_point last_sweep_ = std::chrono::steady_clock::now();
  std::mutex mu_;
  std::map<std::string, AppDesc> ephemeral_;                 // by app name
  std::map<std::string, AppDesc> ephemeral_files_;           // introspected on demand, by file
  std::map<std::string, std::shared_ptr<Pool>> pools_;       // by Target::pool_id
  bool autoscale_ = false;
  bool keep_warm_ = false;
  std::atomic<bool> cancelling_{false};
  std::string cancel_why_;  // under mu_
  ThreadSet warmers_;  // pools warming for versions deployed while serving
};

// The deployed version of an app as the store keeps it (app.json).
struct Deployed {
  int version = 0;
  AppDesc desc;
  nlohmann::json record;
};
Deployed load_deployed(const Store& store, const std::string& app);

}  // namespace thaw::runtime
