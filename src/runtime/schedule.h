// When a deployed function runs by itself (Modal's schedule=): every
// Period, or at the minutes a Cron expression names. Parsed from the
// function's config ({"period_s": S} or {"cron": "...", "timezone": TZ});
// a Cron expression is evaluated in its time zone (UTC by default).
#pragma once
#include <bitset>
#include <ctime>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/timezone.h"

namespace thaw::runtime {

// A standard five-field cron expression: minute hour day-of-month month
// day-of-week, each `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`,
// or a list of those; month and weekday names (jan, mon) are accepted, and
// weekday 7 is Sunday. As in cron, when both day fields are restricted a
// day matching either one matches; when either starts with `*` (`*/2`),
// a day must match both.
class Cron {
 public:
  // Throws thaw::Error naming the field that is wrong.
  static Cron parse(const std::string& expr);
  // The first whole minute after t whose local time in `tz` matches; throws
  // if none comes within five years (e.g. 30 February). A local time a
  // daylight-saving change skips never comes; one it repeats comes twice.
  std::time_t next_after(std::time_t t, const TimeZone& tz) const;
  const std::string& text() const { return text_; }

 private:
  bool matches(const std::tm& local) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;    // 1-31
  std::bitset<13> months_;  // 1-12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool any_day_ = true, any_weekday_ = true;
};

class Schedule {
 public:
  // The schedule in a function's config, or nullopt if it has none.
  static std::optional<Schedule> from_config(const nlohmann::json& config);
  // When to run next, after a run due at (or the schedule's start at) t.
  std::time_t next_after(std::time_t t) const;
  std::string describe() const;
  // "2026-11-30 08:00:00 UTC", and for a Cron in another time zone its
  // local time too: "2026-11-30 08:00:00 UTC (09:00 Europe/Berlin)".
  std::string time_text(std::time_t t) const;

 private:
  double period_s_ = 0;
  std::optional<Cron> cron_;
  std::optional<TimeZone> tz_;  // with cron_
};

}  // namespace thaw::runtime
