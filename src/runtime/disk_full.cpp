#include "runtime/disk_full.h"

#include <cerrno>
#include <cstring>

namespace thaw::runtime {

bool is_disk_full(const std::string& what) {
  for (int e : {ENOSPC, EDQUOT})
    if (what.find(std::strerror(e)) != std::string::npos) return true;
  return false;
}

std::string disk_full_advice(const std::string& home) {
  return "the disk holding THAW_HOME (" + home + ") is full: free space there (`thaw snapshot ls` lists the " +
         "snapshots and their sizes, `thaw snapshot rm KEY` removes one) and deploy again";
}

}  // namespace thaw::runtime
