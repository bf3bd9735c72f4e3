#include "engine/restorer_error.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace thaw::engine {

std::string explain_restorer_error(const std::string& line, uint64_t as_limit, uint64_t max_map_count) {
  const std::string tag = "(errno ";
  auto at = line.rfind(tag);
  if (at == std::string::npos) return line;
  int err = std::atoi(line.c_str() + at + tag.size());
  std::string out = cat(line.substr(0, at), "(", std::strerror(err), ")");
  // An mmap or mremap refused for memory is nearly always a limit, which
  // the bare errno did not name.
  if (err == ENOMEM) {
    out += "; the image's memory did not fit within ";
    if (as_limit != UINT64_MAX) out += cat("the address-space limit (RLIMIT_AS, ulimit -v) of ", as_limit, " bytes, ");
    out += cat("vm.max_map_count (", max_map_count, ") or the memory free here");
  }
  return out;
}

}  // namespace thaw::engine
