// Snapshot keys (docs/runtime-protocol.md): sha256 over the code (app file
// and its local modules), the function's config and Image, and the machine
// fingerprint (Python, thaw, kernel, CPU vendor and model, GPU). The part
// that comes from the app is computed at deploy and kept in app.json; the
// machine part is added wherever the key is needed, so a deployed app run on
// a changed machine (new kernel, new Python) looks for a new snapshot.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/app.h"
#include "runtime/fingerprint.h"

namespace thaw::runtime {

// {relative path -> sha256} of the app file and its local modules, relative
// to the app file's directory (absolute for modules outside it).
nlohmann::json hash_code(const AppDesc& app);

// The app's share of a function's key.
nlohmann::json key_inputs(const AppDesc& app, const FunctionDesc& fn, const nlohmann::json& code_hashes);

std::string snapshot_key(const nlohmann::json& inputs, const Fingerprint& machine);

}  // namespace thaw::runtime
