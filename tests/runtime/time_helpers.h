// What the schedule and time zone tests share.
#pragma once
#include <ctime>
#include <string>

#include "common/error.h"

namespace thaw::runtime::testing {

// Seconds since the epoch of a UTC date and time.
inline std::time_t utc(int y, int mo, int d, int h, int mi, int s = 0) {
  std::tm t{};
  t.tm_year = y - 1900;
  t.tm_mon = mo - 1;
  t.tm_mday = d;
  t.tm_hour = h;
  t.tm_min = mi;
  t.tm_sec = s;
  return ::timegm(&t);
}

// The message fn throws as thaw::Error, or "" if it does not.
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const thaw::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace thaw::runtime::testing
