// Modal's Function.update_autoscaler / Obj.update_autoscaler: a deployed
// function's scaling settings (min_containers, max_containers,
// buffer_containers, scaledown_window) changed while it runs. Settings not
// given keep their value: the decorator's, or an earlier update's. They are
// kept beside the version (<version dir>/autoscaler.json), so every runtime
// sharing the home applies them (`thaw serve` on its next tick) and a new
// deployment starts from its decorator's settings again, as in Modal.
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/store.h"
#include "runtime/target.h"

namespace thaw::runtime {

// The settings `update` names, checked (counts are integers, min and
// buffer >= 0, max >= 1, scaledown_window > 0 seconds; unknown names
// refused; null means "unchanged" and is dropped). Throws with what is
// wrong.
nlohmann::json check_autoscaler_update(const nlohmann::json& update, const FunctionDesc& fn);

// Merges the checked `update` into the version's stored settings for
// `function`; atomic, safe against other runtimes updating at once.
// `check` sees the merged settings before they are written (and throws to
// refuse them). Returns them.
nlohmann::json save_autoscaler(const Store& store, const std::string& app, int version, const std::string& function,
                               const nlohmann::json& update,
                               const std::function<void(const nlohmann::json&)>& check = {});

// The stored settings of one function of a version ({} when none, or when
// the file is not a JSON object: calls must not fail for it).
nlohmann::json load_autoscaler(const Store& store, const std::string& app, int version, const std::string& function);

// Applies stored settings to a resolved deployed target's config.
void apply_autoscaler(Target& t, const nlohmann::json& settings);

}  // namespace thaw::runtime
