#include "runtime/class_params.h"

#include <cmath>

#include "common/error.h"
#include "runtime/sha256.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

// A value's type as Python sees it once the SDK decodes it (thaw._functions.param_value).
std::string python_type(const json& v) {
  if (v.is_string()) return "str";
  if (v.is_boolean()) return "bool";
  if (v.is_number_integer()) return "int";
  if (v.is_number()) return "float";
  if (v.is_null()) return "None";
  if (v.is_array()) return "list";
  if (v.is_object() && v.size() == 1 && v.contains("__bytes__") && v["__bytes__"].is_string()) return "bytes";
  return "dict";
}

// A value of another type would only fail in the container, after it (and
// a snapshot of it, which the per-class cap then counts) was made for it.
void check_type(const std::string& cls, const std::string& name, const json& declared, const json& v) {
  if (!declared.is_object() || !declared.contains("type") || !declared["type"].is_string()) return;
  std::string want = declared["type"];
  std::string got = python_type(v);
  if (want != "str" && want != "int" && want != "bool" && want != "bytes") return;  // not ours to judge
  if (got == want) return;
  // An integer beyond 64 bits, which JSON parsing made a float: not routed
  // (see the header), the container's SDK reads it as the int it is.
  if (want == "int" && v.is_number_float() && std::abs(v.get<double>()) >= 9.2e18) return;
  fail(cls, "(...): parameter '", name, "' is ", want, ", got ", got, " ", v.dump(), "; pass ",
       want == "bytes" ? "bytes (as JSON: {\"__bytes__\": \"<base64>\"})"
       : want == "str" ? "a JSON string"
       : want == "int" ? "a JSON integer"
                       : "true or false",
       " (nothing was started for this call)");
}

}  // namespace

void apply_class_params(Target& t, const json& params) {
  if (params.is_null()) return;
  if (!params.is_object()) fail("params must be an object of parameter names to values, got ", params.dump());
  const json* declared = nullptr;
  if (auto it = t.fn.config.find("parameters"); it != t.fn.config.end() && it->is_object() && !it->empty())
    declared = &*it;
  if (!declared) return;  // no thaw.parameter fields: a custom __init__'s arguments
  for (const auto& [name, v] : params.items())
    if (!declared->contains(name))
      fail("class '", t.fn.name, "' has no parameter '", name, "' (it has: ", [&] {
        std::string have;
        for (const auto& [n, d] : declared->items()) have += (have.empty() ? "" : ", ") + n;
        return have;
      }(), ")");
  for (const auto& [name, v] : params.items()) check_type(t.fn.name, name, (*declared)[name], v);
  json full = json::object(), defaults = json::object();
  for (const auto& [name, d] : declared->items()) {
    bool has_default = d.is_object() && d.contains("default_json");
    if (has_default) defaults[name] = d["default_json"];
    if (params.contains(name)) {
      full[name] = params[name];
    } else if (has_default) {
      full[name] = d["default_json"];
    } else if (d.is_object() && d.value("required", false)) {
      fail("class '", t.fn.name, "' needs its parameter '", name, "' (", t.fn.name, "(", name, "=...))");
    } else {
      return;  // a default of another type (or a config from before default_json): the old way
    }
  }
  // A float (or an integer beyond 64 bits, which JSON parsing makes one)
  // compares as a number: 2.0 would be 2, 2^64 + 1 would be 2^64. Such
  // values keep the old way too (the SDK does not route them either).
  for (const auto& [name, v] : full.items())
    if (v.is_number_float()) return;
  if (full == defaults) return;  // the class's own containers and snapshot
  std::string dump = full.dump();
  // It goes to the container in its environment, which execve limits (128
  // KiB a string): large values (a document as a parameter) keep the old
  // way, one pool whose containers make the instance on first use.
  if (dump.size() > kMaxRoutedParamsBytes) return;
  t.fn.env[kClassParamsEnv] = dump;
  std::string digest = sha256_hex(dump).substr(0, 12);
  t.variant = t.variant.empty() ? "p" + digest : t.variant + "+p" + digest;
  // Warm containers are the class's own, not every set of values'.
  t.fn.config["min_containers"] = 0;
  if (!t.key.empty()) {
    t.key = sha256_hex(json{{"base", t.key}, {"class_params", full}}.dump());
    t.own_snapshot = true;
  }
}

}  // namespace thaw::runtime
