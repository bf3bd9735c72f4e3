#include "runtime/app.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

double number(const json& config, const char* key, double dflt) {
  auto it = config.find(key);
  if (it == config.end() || !it->is_number()) return dflt;
  return it->get<double>();
}

std::map<std::string, std::string> string_map(const json& j) {
  std::map<std::string, std::string> out;
  if (!j.is_object()) return out;
  for (const auto& [k, v] : j.items()) out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return out;
}

std::string stem(const std::string& path) {
  std::string base = path.substr(path.rfind('/') + 1);
  return base.substr(0, base.rfind('.'));
}

}  // namespace

FunctionDesc parse_function(const std::string& name, const json& f) {
  FunctionDesc d;
  d.name = name;
  d.kind = f.value("kind", "function");
  if (d.kind != "function" && d.kind != "class") fail("function ", name, ": unknown kind '", d.kind, "'");
  if (f.contains("methods") && f["methods"].is_array())
    for (const auto& m : f["methods"]) d.methods.push_back(m.is_string() ? m.get<std::string>() : m.value("name", ""));
  if (f.contains("config") && f["config"].is_object()) d.config = f["config"];
  d.image = f.value("image", json());
  d.env = string_map(f.value("env", json::object()));
  d.volumes = string_map(f.value("volumes", json::object()));
  if (auto s = f.find("serialized_function"); s != f.end() && s->is_object())
    d.serialized_file = s->value("path", "");
  return d;
}

bool FunctionDesc::memory_snapshot() const { return config.value("enable_memory_snapshot", false) == true; }

bool FunctionDesc::gpu_snapshot() const {
  if (config.value("enable_gpu_snapshot", false) == true) return true;
  auto it = config.find("experimental_options");
  if (it == config.end() || !it->is_object() || !it->contains("enable_gpu_snapshot")) return false;
  const json& v = (*it)["enable_gpu_snapshot"];
  // Modal str()-coerces experimental options: "True" is as good as true.
  return v == true || v == "True" || v == "true" || v == "1";
}

std::string FunctionDesc::gpu() const {
  auto it = config.find("gpu");
  if (it == config.end() || it->is_null() || *it == false || (it->is_array() && it->empty())) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

double FunctionDesc::cpu_limit() const {
  auto it = config.find("cpu");
  if (it == config.end() || !it->is_object() || !it->contains("limit") || !(*it)["limit"].is_number()) return 0;
  return (*it)["limit"].get<double>();
}

double FunctionDesc::timeout_s() const { return number(config, "timeout", 300); }
double FunctionDesc::startup_timeout_s() const { return number(config, "startup_timeout", timeout_s()); }
double FunctionDesc::scaledown_window_s() const { return number(config, "scaledown_window", 60); }
int FunctionDesc::min_containers() const { return static_cast<int>(number(config, "min_containers", 0)); }
int FunctionDesc::max_containers() const { return static_cast<int>(number(config, "max_containers", 0)); }
int FunctionDesc::max_inputs() const { return static_cast<int>(number(config, "max_inputs", 0)); }
int FunctionDesc::buffer_containers() const { return static_cast<int>(number(config, "buffer_containers", 0)); }
int FunctionDesc::max_concurrent_inputs() const {
  return static_cast<int>(number(config, "max_concurrent_inputs", 1));
}

int FunctionDesc::max_batch_size() const {
  auto it = config.find("batched");
  if (it == config.end() || !it->is_object()) return 1;
  return std::max(1, static_cast<int>(number(*it, "max_batch_size", 1)));
}

int FunctionDesc::inputs_at_once() const { return std::max({1, max_concurrent_inputs(), max_batch_size()}); }

FunctionDesc::Retries FunctionDesc::retries() const {
  Retries r;
  auto it = config.find("retries");
  if (it == config.end() || !it->is_object()) return r;
  r.max_retries = static_cast<int>(number(*it, "max_retries", 0));
  r.backoff_coefficient = number(*it, "backoff_coefficient", r.backoff_coefficient);
  r.initial_delay = number(*it, "initial_delay", r.initial_delay);
  r.max_delay = number(*it, "max_delay", r.max_delay);
  return r;
}

double FunctionDesc::Retries::delay_before(int retry) const {
  return std::min(initial_delay * std::pow(backoff_coefficient, retry - 1), max_delay);
}

uint64_t FunctionDesc::memory_limit_bytes() const {
  // memory=N is a request (Modal reserves, never caps); memory=(request,
  // limit) caps: the SDK gives {"request": MiB, "limit": MiB or null}.
  auto it = config.find("memory");
  if (it == config.end() || !it->is_object() || !(*it).contains("limit") || !(*it)["limit"].is_number()) return 0;
  return static_cast<uint64_t>((*it)["limit"].get<double>() * 1048576.0);
}

const FunctionDesc* AppDesc::find(const std::string& fn) const {
  for (const auto& f : functions)
    if (f.name == fn) return &f;
  return nullptr;
}

AppDesc parse_app(const json& j, const std::string& file_given) {
  return with_context("app description", [&] {
    if (!j.is_object()) fail("not a JSON object");
    AppDesc a;
    a.raw = j;
    a.file = j.contains("app_file") && j["app_file"].is_string() ? j["app_file"].get<std::string>() : file_given;
    a.name = j.contains("app") && j["app"].is_string() ? j["app"].get<std::string>() : stem(a.file);
    for (const auto& m : j.value("local_modules", json::array()))
      a.local_modules.push_back(m.is_string() ? m.get<std::string>() : m.at("path").get<std::string>());
    if (j.contains("python_version") && j["python_version"].is_string()) a.python = j["python_version"];
    for (const auto& e : j.value("local_entrypoints", json::array()))
      a.entrypoints.push_back(e.is_string() ? e.get<std::string>() : e.value("name", ""));
    // Functions and classes share one namespace in an app; classes come in
    // "functions" (with kind "class"), or in "classes" from older SDKs.
    for (const char* table : {"functions", "classes"}) {
      if (!j.contains(table) || !j[table].is_object()) continue;
      for (const auto& [name, f] : j[table].items())
        if (!a.find(name)) a.functions.push_back(parse_function(name, f));
    }
    return a;
  });
}

}  // namespace thaw::runtime
