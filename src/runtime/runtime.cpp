#include "runtime/runtime.h"

#include <algorithm>

#include <thread>

#include "common/error.h"
#include "runtime/autoscaler.h"
#include "runtime/introspect.h"
#include "runtime/class_params.h"
#include "runtime/options.h"
#include "runtime/serialized_files.h"
#include "runtime/snapshot_key.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

json error_reply(const json& id, const std::string& error) {
  return {{"type", "result"}, {"id", id}, {"ok", false}, {"error", error}, {"traceback", ""}};
}

std::string str(const json& msg, const char* key) {
  auto it = msg.find(key);
  return it != msg.end() && it->is_string() ? it->get<std::string>() : "";
}

// A pool's scaling under the stored update_autoscaler settings: a handle's
// own options (Cls.with_options) stay on top of them, as when it was made.
ScaleLimits scaling_of(const Target& t, const json& stored) {
  Target now = t;
  apply_autoscaler(now, stored);
  for (const auto& [k, v] : t.config_overrides.items()) now.fn.config[k] = v;
  if (!t.variant.empty()) now.fn.config["min_containers"] = 0;
  return ScaleLimits::of(now.fn);
}

const json* definition_of(const json& msg) {
  auto it = msg.find("definition");
  return it != msg.end() && it->is_object() ? &*it : nullptr;
}

}  // namespace

Deployed load_deployed(const Store& store, const std::string& app) {
  check_name("app", app);
  auto v = store.current_version(app);
  if (!v) {
    if (store.versions(app).empty()) fail("app '", app, "' is not deployed; run `thaw deploy app.py` first");
    fail("app '", app, "' is stopped; run `thaw deploy` to deploy it again");
  }
  Deployed d;
  d.version = *v;
  d.record = store.read_version(app, *v);
  d.desc = parse_app(d.record.at("introspection"), d.record.value("app_file", ""));
  return d;
}

Target Runtime::resolve_deployed(const std::string& app, const std::string& fn) {
  Deployed d = load_deployed(ctx_.store, app);
  const FunctionDesc* f = d.desc.find(fn);
  if (!f) fail("app '", app, "' (version ", d.version, ") has no function or class '", fn, "'");
  Target t;
  t.app = app;
  t.version = d.version;
  t.app_file = d.record.value("app_file", "");
  t.cwd = d.record.value("code_dir", "/");
  t.fn = *f;
  apply_autoscaler(t, load_autoscaler(ctx_.store, app, d.version, fn));
  if (f->memory_snapshot()) {
    const json& inputs = d.record.at("functions").at(fn).at("key_inputs");
    t.key = snapshot_key(inputs, ctx_.fingerprint);
  }
  return t;
}

Target Runtime::ephemeral_target(const AppDesc& app, const FunctionDesc& fn) const {
  Target t;
  t.app = app.name;
  t.app_file = app.file;
  t.cwd = app.file.substr(0, app.file.rfind('/'));
  if (t.cwd.empty()) t.cwd = "/";
  t.fn = fn;
  return t;
}

void Runtime::add_ephemeral(const AppDesc& app) {
  std::lock_guard<std::mutex> lock(mu_);
  ephemeral_[app.name] = app;
}

const AppDesc& Runtime::ephemeral_app(const std::string& app, const std::string& app_file) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = ephemeral_.find(app); it != ephemeral_.end()) return it->second;
    if (auto it = ephemeral_files_.find(app_file); it != ephemeral_files_.end()) return it->second;
  }
  if (app_file.empty()) fail("app '", app, "' is not running here and the call names no app file");
  AppDesc d = introspect(ctx_, absolute_app_file(app_file));
  std::lock_guard<std::mutex> lock(mu_);
  return ephemeral_files_.emplace(app_file, std::move(d)).first->second;
}

Target Runtime::resolve(const std::string& app, const std::string& fn, const std::string& mode,
                        const std::string& app_file, const json* definition) {
  bool ephemeral = mode == "ephemeral";
  if (mode.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    ephemeral = ephemeral_.count(app) > 0;
  }
  if (!ephemeral) return resolve_deployed(app, fn);
  // serialized=True: the caller's own definition, pickled function
  // included. Its file need not define it (a function made inside another
  // one, or under `if __name__ == "__main__":`), so it is not introspected.
  if (definition && definition->is_object() && definition->contains("serialized_function")) {
    FunctionDesc f = parse_function(fn, *definition);
    if (f.serialized_file.empty()) fail("app '", app, "': serialized function '", fn, "' comes without its file");
    AppDesc a;
    a.name = app;
    if (app_file.empty()) {
      // Defined where there is no file (a notebook, the REPL): its
      // containers work in the caller's directory.
      std::string cwd = definition->value("cwd", std::string());
      if (cwd.empty() || cwd[0] != '/')
        fail("app '", app, "': a call of serialized function '", fn, "' names neither an app file nor a directory");
      Target t = ephemeral_target(a, f);
      t.cwd = cwd;
      return t;
    }
    a.file = absolute_app_file(app_file);
    return ephemeral_target(a, f);
  }
  const AppDesc& a = ephemeral_app(app, app_file);
  const FunctionDesc* f = a.find(fn);
  if (!f) fail("app '", a.name, "' has no function or class '", fn, "'");
  return ephemeral_target(a, *f);
}

std::shared_ptr<Pool> Runtime::pool_for(const Target& t) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& p = pools_[t.pool_id()];
  if (!p) p = std::make_shared<Pool>(snapshots_, t, autoscale_);
  return p;
}

json Runtime::call(const json& msg, bool use_snapshot, const YieldSink& on_yield, const CancelCheck& cancelled) {
  json id = msg.value("id", json());
  Target t;
  try {
    t = resolve(str(msg, "app"), str(msg, "function"), str(msg, "mode"), str(msg, "app_file"), definition_of(msg));
    if (auto o = msg.find("options"); o != msg.end() && !o->is_null()) apply_options(t, *o);
    if (auto p = msg.find("params"); p != msg.end()) apply_class_params(t, *p);
  } catch (const std::exception& e) {
    return error_reply(id, e.what());
  }
  // A class called without a method, or with one it does not have, is
  // refused here, before a container is started (or restored) for nothing.
  std::string method = str(msg, "method");
  const auto& methods = t.fn.methods;
  std::string have;
  for (const auto& m : methods) have += (have.empty() ? "" : ", ") + m;
  if (t.fn.kind == "class" && method.empty())
    return error_reply(id, cat("'", t.fn.name, "' of app '", t.app, "' is a class; the call must name one of its ",
                               "@method()s (it has: ", have.empty() ? "none" : have,
                               "); with thaw call: --method NAME"));
  if (t.fn.kind == "class" && !methods.empty() && std::find(methods.begin(), methods.end(), method) == methods.end())
    return error_reply(id, cat("class '", t.fn.name, "' of app '", t.app, "' has no @method() named '", method,
                               "' (it has: ", have, ")"));
  // Likewise a function called as a class: its worker would only fail (or,
  // for parameters, drop them) once a container had started.
  if (t.fn.kind != "class" && !method.empty())
    return error_reply(id, cat("'", t.fn.name, "' of app '", t.app, "' is a function, not a class: it has no method '",
                               method, "'; call it without one (with thaw call: drop --method)"));
  if (auto p = msg.find("params"); t.fn.kind != "class" && p != msg.end() && p->is_object() && !p->empty())
    return error_reply(id, cat("'", t.fn.name, "' of app '", t.app, "' is a function, not a class: it takes no ",
                               "class parameters; pass arguments instead (with thaw call: --args/--kwargs, not --params)"));
  YieldSink forward;
  if (on_yield) {
    forward = [&](const json& m) {
      json y = m;
      y["id"] = id;
      on_yield(y);
    };
  }
  // The caller's cancel (FunctionCall.cancel()) or the runtime's own.
  CancelCheck check = [&] { return cancelling_.load() || (cancelled && cancelled()); };
  json r = pool_for(t)->call(msg, use_snapshot, forward, check);
  if (r.value("cancelled", false) && cancelling_) {
    std::lock_guard<std::mutex> lock(mu_);
    r["error"] = cat("cancelled: ", t.label(), ": ", cancel_why_);
  }
  r["type"] = "result";
  r["id"] = id;
  return r;
}

json Runtime::lookup(const json& msg) {
  std::string app = str(msg, "app"), fn = str(msg, "function");
  try {
    Target t = resolve(app, fn, str(msg, "mode"), str(msg, "app_file"), definition_of(msg));
    // The config lets a from_name() handle act as the definition would
    // (a generator wants .remote_gen(), a method's kind).
    json found = {{"type", "found"}, {"id", msg.value("id", json())}, {"app", app}, {"function", fn},
                  {"kind", t.fn.kind}, {"methods", t.fn.methods}, {"version", t.version}, {"config", t.fn.config}};
    // Where its web endpoints answer, when this runtime serves them.
    if (!ctx_.web_url.empty()) found["web_url"] = ctx_.web_url + "/" + app;
    return found;
  } catch (const std::exception& e) {
    return {{"type", "error"}, {"id", msg.value("id", json())}, {"error", e.what()}};
  }
}

json Runtime::update_autoscaler(const json& msg) {
  json id = msg.value("id", json());
  std::string app = str(msg, "app"), fn = str(msg, "function");
  try {
    Target t = resolve(app, fn, str(msg, "mode"), str(msg, "app_file"));
    if (!t.version)
      fail("update_autoscaler: app '", app, "' runs from its file (`thaw run`), with its decorators' settings; "
           "deploy it (`thaw deploy`) to change them while it runs");
    json update = check_autoscaler_update(msg.value("settings", json::object()), t.fn);
    json merged = save_autoscaler(ctx_.store, app, t.version, fn, update, [&](const json& settings) {
      Target would = t;
      apply_autoscaler(would, settings);
      ScaleLimits l = ScaleLimits::of(would.fn);
      if (l.max_containers > 0 && l.min_containers > l.max_containers)
        fail("update_autoscaler: min_containers (", l.min_containers, ") would be above max_containers (",
             l.max_containers, "); raise max_containers too, or ask for fewer");
    });
    apply_autoscaler(t, merged);
    // This runtime's pools of the function (a handle's too) follow now;
    // other runtimes sharing the home on their next tick, new pools when
    // they are made.
    std::vector<std::shared_ptr<Pool>> mine;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, p] : pools_) {
        const Target& pt = p->target();
        if (pt.app == app && pt.version == t.version && pt.fn.name == fn) mine.push_back(p);
      }
    }
    bool has_base = false;
    for (auto& p : mine) {
      p->set_limits(scaling_of(p->target(), merged), keep_warm_);
      has_base = has_base || p->target().variant.empty();
    }
    if (!has_base && keep_warm_ && t.fn.min_containers() > 0) warmers_.start([p = pool_for(t)] { p->warm(); });
    ScaleLimits l = ScaleLimits::of(t.fn);
    return {{"type", "updated"}, {"id", id}, {"app", app}, {"function", fn}, {"version", t.version},
            {"settings", {{"min_containers", l.min_containers}, {"max_containers", l.max_containers},
                          {"buffer_containers", l.buffer_containers}, {"scaledown_window", l.scaledown_window_s}}}};
  } catch (const std::exception& e) {
    return {{"type", "error"}, {"id", id}, {"error", e.what()}};
  }
}

void Runtime::cancel_all(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancel_why_.empty()) cancel_why_ = why;
  }
  cancelling_ = true;
  // Calls see the flag within 100 ms (Pool::call); starts are stopped here.
  launcher_.abort_starts();
}

std::string Runtime::cancelled_why() {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelling_ ? cancel_why_ : std::string();
}

void Runtime::warm_deployed() {
  std::vector<std::thread> warmers;
  for (const auto& app : ctx_.store.apps()) {
    try {
      Deployed d = load_deployed(ctx_.store, app);
      for (const auto& f : d.desc.functions) {
        Target t = resolve_deployed(app, f.name);
        // The first restore of each snapshot then finds its image read.
        if (!t.key.empty() && ctx_.store.has_image(t.key))
          warmers.emplace_back([this, image = ctx_.store.snapshot_image(t.key)] { launcher_.shells().prepare(image); });
        if (t.fn.min_containers() > 0) warmers.emplace_back([this, p = pool_for(t)] { p->warm(); });
      }
    } catch (const std::exception&) {
      // not deployed (stopped) or unreadable: nothing to warm
    }
  }
  for (auto& w : warmers) w.join();
}

void Runtime::warm_new_versions() {
  for (const auto& app : ctx_.store.apps()) {
    try {
      Deployed d = load_deployed(ctx_.store, app);
      for (const auto& f : d.desc.functions) {
        int min = f.min_containers();
        json updated = load_autoscaler(ctx_.store, app, d.version, f.name);
        if (auto m = updated.find("min_containers"); m != updated.end() && m->is_number_integer()) min = *m;
        if (min <= 0) continue;
        auto p = pool_for(resolve_deployed(app, f.name));
        if (!p->warmed()) warmers_.start([p] { p->warm(); });
      }
    } catch (const std::exception&) {
      // not deployed (stopped), or being deployed: the next tick looks again
    }
  }
}

void Runtime::tick() {
  launcher_.shells().prune();
  if (std::chrono::steady_clock::now() - last_sweep_ > std::chrono::hours(1)) {
    last_sweep_ = std::chrono::steady_clock::now();
    calls_.sweep();
    try {
      sweep_serialized(ctx_.store, ctx_.log);
    } catch (const std::exception& e) {
      ctx_.log.line(std::string("Warning: could not sweep serialized function files: ") + e.what());
    }
  }
  if (keep_warm_) warm_new_versions();
  std::vector<std::shared_ptr<Pool>> pools;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, p] : pools_) pools.push_back(p);
  }
  for (auto& p : pools) {
    const Target& t = p->target();
    bool stale = t.version && ctx_.store.current_version(t.app) != t.version;
    if (!stale) {
      // Settings updated by another runtime sharing the home.
      if (t.version) p->set_limits(scaling_of(t, load_autoscaler(ctx_.store, t.app, t.version, t.fn.name)), keep_warm_);
      p->scale_down();
      continue;
    }
    p->stop_idle();
    std::lock_guard<std::mutex> lock(mu_);
    if (p->size() == 0) pools_.erase(t.pool_id());
  }
}

void Runtime::shutdown() {
  warmers_.join_all();
  std::map<std::string, std::shared_ptr<Pool>> pools;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pools.swap(pools_);
  }
  std::vector<std::thread> stoppers;
  for (auto& [id, p] : pools) stoppers.emplace_back([p] { p->shutdown(); });
  for (auto& t : stoppers) t.join();
  stoppers.clear();
  pools.clear();
  launcher_.shells().clear();
  // Its pools held their pickles; what `thaw run` or a script's runtime
  // leaves unused goes now (runtime/serialized_files.h).
  try {
    sweep_serialized(ctx_.store, ctx_.log);
  } catch (const std::exception& e) {
    ctx_.log.line(std::string("Warning: could not sweep serialized function files: ") + e.what());
  }
}

}  // namespace thaw::runtime
