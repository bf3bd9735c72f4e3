// An app as thaw._introspect describes it (python/thaw/_introspect.py:
// app, app_file, functions, classes, local_modules, ...), and the settings the runtime derives from each
// function's decorator parameters.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thaw::runtime {

struct FunctionDesc {
  std::string name;
  std::string kind = "function";  // or "class"
  std::vector<std::string> methods;
  nlohmann::json config = nlohmann::json::object();  // decorator parameters as given
  nlohmann::json image;                              // Image description (or null)
  std::map<std::string, std::string> env;            // Image.env + secrets
  std::map<std::string, std::string> volumes;        // mount path -> Volume name
  // serialized=True: the file of the pickled function or class, which the
  // worker loads instead of finding it by name in the app file ("" if not).
  std::string serialized_file;

  // Derived from config.
  bool memory_snapshot() const;
  bool gpu_snapshot() const;
  std::string gpu() const;  // "" when none requested
  double timeout_s() const;
  double startup_timeout_s() const;
  double scaledown_window_s() const;
  int min_containers() const;
  int max_containers() const;  // 0: no limit
  int buffer_containers() const;  // idle containers to keep beyond the busy ones, under load
  int max_inputs() const;         // inputs a container serves before it is stopped; 0: no limit
  int max_concurrent_inputs() const;  // per container (@concurrent)
  int max_batch_size() const;         // @batched; 1 when not batched
  // Inputs a container is sent at once: max_concurrent_inputs, or the batch
  // size, since a batch gathers inputs that are in flight together.
  int inputs_at_once() const;
  uint64_t memory_limit_bytes() const;  // only from memory=(request, limit)
  double cpu_limit() const;             // cores, only from cpu=(request, limit); 0: none
  // retries= (thaw.Retries): failed calls are run again, up to max_retries
  // times, waiting initial_delay * backoff_coefficient^(n-1), at most max_delay.
  struct Retries {
    int max_retries = 0;
    double backoff_coefficient = 2, initial_delay = 1, max_delay = 60;
    double delay_before(int retry) const;  // retry: 1, 2, ...
  };
  Retries retries() const;
};

struct AppDesc {
  std::string name;
  std::string file;  // the app file as introspected
  std::vector<std::string> local_modules;
  std::string python;
  std::vector<std::string> entrypoints;
  std::vector<FunctionDesc> functions;
  nlohmann::json raw;  // the introspection output itself

  const FunctionDesc* find(const std::string& fn) const;
};

AppDesc parse_app(const nlohmann::json& j, const std::string& file_given);
// One entry of the introspection output's "functions".
FunctionDesc parse_function(const std::string& name, const nlohmann::json& f);

}  // namespace thaw::runtime
