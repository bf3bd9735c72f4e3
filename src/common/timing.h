#pragma once
#include <chrono>

namespace thaw {

// Milliseconds since t, for the timings thaw reports.
inline double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace thaw
