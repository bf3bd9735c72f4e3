#include "runtime/autoscaler.h"

#include "common/error.h"
#include "common/io.h"
#include "container/fsutil.h"
#include "runtime/options.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

std::string settings_path(const Store& store, const std::string& app, int version) {
  return store.version_dir(app, version) + "/autoscaler.json";
}

// The stored settings. Written atomically, so never half; a file that is
// not a JSON object anyway is not ours to trust: an update refuses it
// (`strict`), everyone else scales with the decorators' settings.
json read_settings(const std::string& path, bool strict) {
  std::string text;
  if (!try_read_file(path, &text)) return json::object();
  json j = json::parse(text, nullptr, false);
  if (j.is_object()) return j;
  if (strict) fail(path, ": not a JSON object; remove it to reset the autoscaler settings");
  return json::object();
}

}  // namespace

json check_autoscaler_update(const json& update, const FunctionDesc& fn) {
  if (!update.is_object()) fail("update_autoscaler: the settings must be an object, not ", update.dump());
  json out = json::object();
  for (const auto& [k, v] : update.items()) {
    if (v.is_null()) continue;
    bool ok;
    if (k == "min_containers" || k == "buffer_containers" || k == "max_containers") {
      ok = v.is_number_integer() && v.get<long long>() >= (k == "max_containers" ? 1 : 0) &&
           v.get<long long>() <= 1000;
    } else if (k == "scaledown_window") {
      ok = v.is_number() && v.get<double>() > 0;
    } else {
      fail("update_autoscaler: unknown setting '", k,
           "' (it takes min_containers, max_containers, buffer_containers, scaledown_window)");
    }
    if (!ok)
      fail("update_autoscaler: ", k, " cannot be ", v.dump(),
           k == "scaledown_window" ? " (seconds, more than 0)"
                                   : k == "max_containers" ? " (an integer from 1 to 1000)"
                                                           : " (an integer from 0 to 1000)");
    check_web_server_scaling(fn, k, v, "update_autoscaler: " + fn.name);
    out[k] = v;
  }
  return out;
}

json save_autoscaler(const Store& store, const std::string& app, int version, const std::string& function,
                     const json& update, const std::function<void(const json&)>& check) {
  std::string path = settings_path(store, app, version);
  // Read, merge and replace under a lock: two runtimes updating different
  // settings at once must both count.
  FileLock lock(path + ".lock");
  json all = read_settings(path, true);
  json& mine = all[function];
  if (!mine.is_object()) mine = json::object();
  for (const auto& [k, v] : update.items()) mine[k] = v;
  if (check) check(mine);
  container::write_file_atomic(path, all.dump(2) + "\n");
  return mine;
}

json load_autoscaler(const Store& store, const std::string& app, int version, const std::string& function) {
  json all = read_settings(settings_path(store, app, version), false);
  auto it = all.find(function);
  return it != all.end() && it->is_object() ? *it : json::object();
}

void apply_autoscaler(Target& t, const json& settings) {
  for (const auto& [k, v] : settings.items()) t.fn.config[k] = v;
}

}  // namespace thaw::runtime
