#include "runtime/options.h"

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

const json& section(const json& options, const char* name) {
  static const json empty = json::object();
  auto it = options.find(name);
  if (it == options.end() || it->is_null()) return empty;
  if (!it->is_object()) fail("options: \"", name, "\" must be an object, got ", it->dump());
  return *it;
}

}  // namespace

void apply_options(Target& t, const json& options) {
  if (!options.is_object()) fail("options must be an object, got ", options.dump());
  for (const auto& [k, v] : options.items())
    if (k != "config" && k != "env" && k != "volumes") fail("options: unknown section \"", k, "\"");
  const json& config = section(options, "config");
  const json& env = section(options, "env");
  const json& volumes = section(options, "volumes");
  for (const auto& [k, v] : config.items()) {
    if (!kConfigKeys.count(k))
      fail("options: \"", k, "\" cannot be changed per handle (", t.label(), " runs with its deployed value)");
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
  for (const auto& [path, name] : volumes.items()) {
    if (!name.is_string()) fail("options: volume at ", path, " must be a Volume name, got ", name.dump());
    if (path.empty() || path[0] != '/' || path.find("/../") != std::string::npos)
      fail("options: volume mount path ", path, " must be absolute");
    check_name("Volume", name.get<std::string>());
    t.fn.volumes[path] = name.get<std::string>();
  }
  // The worker applies the config part too (timeouts, concurrency and
  // batching are its business as well): start.env carries it.
  t.config_overrides = config;
  std::string digest = sha256_hex(json{{"config", config}, {"env", env}, {"volumes", volumes}}.dump());
  t.variant = digest.substr(0, 12);
  json seen_by_snapshot = {{"env", env}, {"volumes", volumes}, {"gpu", config.value("gpu", json())}};
  if (!t.key.empty() && (!env.empty() || !volumes.empty() || config.contains("gpu")))
    t.key = sha256_hex(json{{"base", t.key}, {"options", seen_by_snapshot}}.dump());
}

}  // namespace thaw::runtime
