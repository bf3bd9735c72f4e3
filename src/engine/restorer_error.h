// The restorer (freestanding, no libc) reports a failure as
// "<what> at <address> (errno N)"; this turns it into a message for people.
#pragma once
#include <cstdint>
#include <string>

namespace thaw::engine {

// Adds the errno's text and, for ENOMEM, which limits a restore of the
// image can run into: `as_limit` is the restored process's RLIMIT_AS
// (UINT64_MAX for none), `max_map_count` the kernel's.
std::string explain_restorer_error(const std::string& line, uint64_t as_limit, uint64_t max_map_count);

}  // namespace thaw::engine
