// A full disk under $THAW_HOME is not the program's fault: a snapshot (or a
// deploy) that failed for it works once there is room. Errors carry only
// their text (common/error.h), and fail_errno() ends it with strerror(), so
// that is what is looked for.
#pragma once
#include <string>

namespace thaw::runtime {

// Whether the error's text ends in ENOSPC's or EDQUOT's strerror().
bool is_disk_full(const std::string& what);

// What to do about it, naming the store's directory.
std::string disk_full_advice(const std::string& home);

}  // namespace thaw::runtime
