// Asking the SDK what an app file holds: `python3 -m thaw._introspect FILE`.
#pragma once
#include <string>

#include "runtime/app.h"
#include "runtime/context.h"

namespace thaw::runtime {

// Absolute path of file; throws if it is not a readable regular file.
std::string absolute_app_file(const std::string& file);

AppDesc introspect(const Context& ctx, const std::string& app_file);

}  // namespace thaw::runtime
