// An IANA time zone ("America/New_York"), read from the system's zoneinfo
// (TZif files, RFC 8536: Debian's tzdata), for Cron schedules in local time.
// Only UTC -> local is needed: a schedule walks UTC minutes and asks what
// local time each one is.
#pragma once
#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace thaw::runtime {

class TimeZone {
 public:
  // "UTC" (and its aliases) needs no file. Throws thaw::Error naming the
  // zone and what to do if it is unknown or its file is not valid TZif.
  // $TZDIR, when set, is searched instead of /usr/share/zoneinfo.
  static TimeZone load(const std::string& name);
  // Parses TZif data (tests, and load()); `name` is for messages.
  static TimeZone parse(const std::string& name, const std::string& data);

  // Seconds east of UTC in effect at the instant t.
  int32_t offset_at(std::time_t t) const;
  // The local broken-down time of t.
  std::tm local(std::time_t t) const;
  const std::string& name() const { return name_; }
  bool is_utc() const { return transitions_.empty() && !rule_.dst && rule_.std_offset == 0; }

 private:
  // The POSIX TZ string at the end of a TZif file ("EST5EDT,M3.2.0,M11.1.0"):
  // the rule for instants after the last transition.
  struct Rule {
    int32_t std_offset = 0, dst_offset = 0;  // seconds east of UTC
    bool dst = false;
    struct When {
      char kind = 'M';  // 'M' month.week.day, 'J' 1-365 without Feb 29, 'D' 0-365
      int month = 0, week = 0, day = 0;
      int32_t time = 7200;  // seconds after local midnight (may be < 0 or > 24 h)
    } start, end;
  };
  static Rule parse_rule(const std::string& name, const std::string& s);
  static std::time_t rule_instant(const Rule::When& w, int year, int32_t offset);
  int32_t rule_offset(std::time_t t) const;

  std::string name_;
  std::vector<int64_t> transitions_;  // ascending
  std::vector<int32_t> offsets_;      // in effect from transitions_[i]
  int32_t first_offset_ = 0;          // before the first transition
  bool has_rule_ = false;
  Rule rule_;
};

}  // namespace thaw::runtime
