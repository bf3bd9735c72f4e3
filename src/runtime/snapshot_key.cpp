#include "runtime/snapshot_key.h"

#include "common/io.h"
#include "runtime/sha256.h"

namespace thaw::runtime {

using nlohmann::json;

json hash_code(const AppDesc& app) {
  std::string dir = app.file.substr(0, app.file.rfind('/') + 1);
  json out = json::object();
  std::vector<std::string> files{app.file};
  files.insert(files.end(), app.local_modules.begin(), app.local_modules.end());
  for (const auto& f : files) {
    std::string rel = f.rfind(dir, 0) == 0 ? f.substr(dir.size()) : f;
    out[rel] = sha256_hex(read_file(f));
  }
  return out;
}

json key_inputs(const AppDesc& app, const FunctionDesc& fn, const json& code_hashes) {
  return {{"app", app.name},     {"function", fn.name}, {"kind", fn.kind},
          {"code", code_hashes}, {"config", fn.config}, {"image", fn.image},
          {"env", fn.env}};
}

std::string snapshot_key(const json& inputs, const Fingerprint& machine) {
  // nlohmann's objects keep keys sorted: dump() is canonical.
  return sha256_hex(json{{"inputs", inputs}, {"machine", machine.key_part()}, {"key_format", 1}}.dump());
}

}  // namespace thaw::runtime
