#include "runtime/options.h"

#include <algorithm>
#include <set>

#include "common/error.h"
#include "runtime/sha256.h"
#include "runtime/store.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

// The settings a handle may change (python/thaw/_config.py OPTION_NAMES,
// with_concurrency and with_batching), as config keys.
const std::set<std::string> kConfigKeys = {
    "cpu",      "memory",           "gpu",     "timeout", "retries", "max_containers", "buffer_containers",
    "scaledown_window", "max_concurrent_inputs", "target_concurrent_inputs", "batched"};

// A value of the type the deployed config holds for the key.
void check_value(const std::string& k, const json& v) {
  static const std::set<std::string> kCounts = {"max_containers", "buffer_containers", "max_concurrent_inputs",
                                                "target_concurrent_inputs"};
  bool ok = true;
  if (kCounts.count(k)) {
    ok = v.is_null() || (v.is_number_integer() && v.get<long long>() >= (k == "buffer_containers" ? 0 : 1));
  } else if (k == "timeout" || k == "scaledown_window") {
    ok = v.is_number() && v.get<double>() > 0;
  } else if (k == "batched") {
    ok = v.is_object() && v.contains("max_batch_size") && v["max_batch_size"].is_number_integer() &&
         v["max_batch_size"].get<long long>() >= 1 && v.contains("wait_ms") && v["wait_ms"].is_number_integer() &&
         v["wait_ms"].get<long long>() >= 0;
  } else if (k == "retries") {
    ok = v.is_object() || v.is_null();
  } else if (k == "gpu") {
    ok = v.is_string() || v.is_array() || v.is_null();
  } else if (k == "cpu" || k == "memory") {
    ok = v.is_number() || v.is_object() || v.is_array() || v.is_null();
  }
  if (!ok) fail("options: ", k, " cannot be ", v.dump());
}

// An absolute path without empty, "." or ".." parts, other than "/".
bool plain_absolute(const std::string& path) {
  if (path.size() < 2 || path[0] != '/') return false;
  size_t start = 1;
  for (;;) {
    size_t end = path.find('/', start);
    std::string part = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}


const json& section(const json& options, const char* name) {
  static const json empty = json::object();
  auto it = options.find(name);
  if (it == options.end() || it->is_null()) return empty;
  if (!it->is_object()) fail("options: \"", name, "\" must be an object, got ", it->dump());
  return *it;
}

}  // namespace

bool has_web_server(const FunctionDesc& fn) {
  auto kind = [](const json& j) {
    return j.is_object() && j.contains("web_endpoint") && j["web_endpoint"].is_object() &&
           j["web_endpoint"].value("kind", "") == "web_server";
  };
  if (kind(fn.config)) return true;
  if (auto m = fn.config.find("methods"); m != fn.config.end() && m->is_object())
    for (const auto& [name, info] : m->items())
      if (kind(info)) return true;
  return false;
}

void check_web_server_scaling(const FunctionDesc& fn, const std::string& k, const json& v, const std::string& who) {
  if (!v.is_number() || !has_web_server(fn)) return;
  long long most = k == "max_containers" || k == "min_containers" ? 1 : k == "buffer_containers" ? 0 : -1;
  if (most >= 0 && v.get<long long>() > most)
    fail(who, " serves a @web_server, whose server holds a port of the host: it runs one container "
              "at a time, so ", k, " cannot be ", v.dump());
}

void apply_options(Target& t, const json& options) {
  if (!options.is_object()) fail("options must be an object, got ", options.dump());
  for (const auto& [k, v] : options.items())
    if (k != "config" && k != "env" && k != "volumes") fail("options: unknown section \"", k, "\"");
  const json& config = section(options, "config");
  const json& env = section(options, "env");
  const json& volumes = section(options, "volumes");
  bool batched = t.fn.config.contains("batched") && t.fn.config["batched"].is_object();
  for (const auto& [k, v] : config.items()) {
    if (!kConfigKeys.count(k))
      fail("options: \"", k, "\" cannot be changed per handle (", t.label(), " runs with its deployed value)");
    check_value(k, v);
    if (k == "batched" && !batched)
      fail(t.label(), " has no @batched method: with_batching() needs one (a batched method takes lists)");
    if (k == "max_concurrent_inputs" && batched && v.is_number() && v.get<long long>() > 1)
      fail(t.label(), " has a @batched method, which cannot be combined with concurrent inputs");
    check_web_server_scaling(t.fn, k, v, t.label());
    t.fn.config[k] = v;
  }
  for (const auto& [k, v] : env.items()) {
    if (v.is_null()) {
      t.fn.env.erase(k);
    } else if (v.is_string()) {
      t.fn.env[k] = v.get<std::string>();
    } else {
      fail("options: env ", k, " must be a string or null, got ", v.dump());
    }
  }
  for (const auto& [path, given] : volumes.items()) {
    // A Volume's name, or {"name": ..., "read_only": true} for vol.read_only().
    json name = given;
    bool read_only = false;
    if (given.is_object()) {
      name = given.value("name", json());
      json ro = given.value("read_only", json(false));
      if (!ro.is_boolean()) fail("options: volume at ", path, ": read_only must be true or false, got ", ro.dump());
      read_only = ro.get<bool>();
      for (const auto& [k, v] : given.items())
        if (k != "name" && k != "read_only") fail("options: volume at ", path, ": unknown key \"", k, "\"");
    }
    if (!name.is_string())
      fail("options: volume at ", path, " must be a Volume name or {\"name\", \"read_only\"}, got ", given.dump());
    if (!plain_absolute(path))
      fail("options: volume mount path ", path, " must be absolute, other than /, without empty, . or .. parts");
    check_name("Volume", name.get<std::string>());
    t.fn.volumes[path] = name.get<std::string>();
    // The handle's volume at this path is mounted as the handle gives it,
    // whatever the deployed one at the same path was.
    if (auto ro = t.fn.config.find("read_only_volumes"); ro != t.fn.config.end() && ro->is_array())
      ro->erase(std::remove(ro->begin(), ro->end(), json(path)), ro->end());
    if (read_only) {
      json& ro = t.fn.config["read_only_volumes"];
      if (!ro.is_array()) ro = json::array();
      ro.push_back(path);
    }
  }
  // The worker applies the config part too (timeouts, concurrency and
  // batching are its business as well): start.env carries it.
  t.config_overrides = config;
  // A handle's pool keeps no warm containers of its own: min_containers
  // are the deployed function's.
  t.fn.config["min_containers"] = 0;
  std::string digest = sha256_hex(json{{"config", config}, {"env", env}, {"volumes", volumes}}.dump());
  t.variant = digest.substr(0, 12);
  // What the snapshot phase sees, and the limits its container ran under
  // (a restore that fails under other limits must not count against the
  // deployed snapshot, nor recreate it).
  json seen_by_snapshot = {{"env", env},
                           {"volumes", volumes},
                           {"gpu", config.value("gpu", json())},
                           {"cpu", config.value("cpu", json())},
                           {"memory", config.value("memory", json())}};
  if (!t.key.empty() && (!env.empty() || !volumes.empty() || config.contains("gpu") || config.contains("cpu") ||
                         config.contains("memory")))
  {
    t.key = sha256_hex(json{{"base", t.key}, {"options", seen_by_snapshot}}.dump());
    t.own_snapshot = true;
  }
}

}  // namespace thaw::runtime
