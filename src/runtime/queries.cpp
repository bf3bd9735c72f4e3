// Requests that read what the runtime holds without running anything:
// `stats` (Function.get_current_stats) and `lookup_app` (App.lookup).
#include "common/error.h"
#include "runtime/store.h"
#include "runtime/runtime.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

std::string str(const json& msg, const char* key) {
  auto it = msg.find(key);
  return it != msg.end() && it->is_string() ? it->get<std::string>() : "";
}

const json* definition_of(const json& msg) {
  auto it = msg.find("definition");
  return it != msg.end() && it->is_object() ? &*it : nullptr;
}

}  // namespace

json Runtime::stats(const json& msg) {
  json id = msg.value("id", json());
  std::string app = str(msg, "app"), fn = str(msg, "function");
  try {
    Target t = resolve(app, fn, str(msg, "mode"), str(msg, "app_file"), definition_of(msg));
    // The function's pools in this runtime: its own, and those of its
    // handles (with_options) and of its classes' parameter sets, whose ids
    // extend its own after a "+". Pools of a version no longer deployed
    // do not count: their calls are not this version's.
    std::string base = t.pool_id();
    PoolStats sum;
    std::vector<std::shared_ptr<Pool>> mine;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [pid, p] : pools_)
        if (pid == base || pid.rfind(base + "+", 0) == 0) mine.push_back(p);
    }
    for (auto& p : mine) {
      PoolStats s = p->stats();
      sum.backlog += s.backlog;
      sum.runners += s.runners;
    }
    return {{"type", "stats"},    {"id", id},           {"app", app},
            {"function", fn},     {"version", t.version}, {"backlog", sum.backlog},
            {"num_total_runners", sum.runners}};
  } catch (const std::exception& e) {
    return {{"type", "error"}, {"id", id}, {"error", e.what()}};
  }
}

json Runtime::lookup_app(const json& msg) {
  json id = msg.value("id", json());
  std::string app = str(msg, "app");
  bool missing = false;  // a good name with no deployed version: App.lookup(create_if_missing=True)'s case
  try {
    check_name("app", app);
    missing = !ctx_.store.current_version(app);
    Deployed d = load_deployed(ctx_.store, app);
    json functions = json::object();
    for (const auto& f : d.desc.functions) {
      // As `lookup` answers for each: the config with update_autoscaler's settings.
      Target t = resolve_deployed(app, f.name);
      functions[f.name] = {{"kind", t.fn.kind}, {"methods", t.fn.methods}, {"config", t.fn.config}};
    }
    return {{"type", "found_app"}, {"id", id}, {"app", app}, {"version", d.version}, {"functions", functions}};
  } catch (const std::exception& e) {
    json error = {{"type", "error"}, {"id", id}, {"error", e.what()}};
    if (missing) error["kind"] = "not_found";
    return error;
  }
}

}  // namespace thaw::runtime
