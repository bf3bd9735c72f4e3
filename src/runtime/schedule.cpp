#include "runtime/schedule.h"

#include <cctype>
#include <cmath>
#include <vector>

#include "common/error.h"

namespace thaw::runtime {

namespace {

const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
const char* const kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct Field {
  const char* name;
  int lo, hi;
  const char* const* names;  // index 0 stands for lo
  int names_count;
};

int value_of(const std::string& s, const Field& f) {
  std::string lower;
  for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (int i = 0; i < f.names_count; i++)
    if (lower == f.names[i]) return f.lo + i;
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
    fail("'", s, "' is not a number", f.names ? " or a name" : "");
  size_t first = s.find_first_not_of('0');  // leading zeros do not count toward the size
  std::string digits = first == std::string::npos ? "0" : s.substr(first);
  int v = digits.size() > 6 ? f.hi + 1 : std::stoi(digits);
  if (v < f.lo || v > f.hi) fail(s, " is outside ", f.lo, "-", f.hi);
  return v;
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

// The values a field allows; *star says whether it starts with `*` (`*`,
// `*/2`), which for the two day fields means "not restricted", as in cron.
std::vector<bool> parse_field(const std::string& text, const Field& f, bool* star) {
  std::vector<bool> allowed(f.hi + 1, false);
  *star = !text.empty() && text[0] == '*';
  try {
    for (const auto& part : split_on(text, ',')) {
      std::string range = part;
      int step = 1;
      if (size_t slash = part.find('/'); slash != std::string::npos) {
        range = part.substr(0, slash);
        std::string s = part.substr(slash + 1);
        if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos || std::stoi(s) == 0)
          fail("step '", s, "' is not a positive number");
        step = std::stoi(s);
      }
      int lo, hi;
      if (range == "*") {
        lo = f.lo;
        hi = f.hi;
      } else if (size_t dash = range.find('-'); dash != std::string::npos) {
        lo = value_of(range.substr(0, dash), f);
        hi = value_of(range.substr(dash + 1), f);
        if (hi == 0 && f.hi == 7) hi = 7;  // a weekday range ending on Sunday (mon-sun)
        if (lo > hi) fail("range ", range, " runs backwards");
      } else {
        lo = value_of(range, f);
        hi = part.find('/') != std::string::npos ? f.hi : lo;  // `5/15`: from 5 on
      }
      for (int v = lo; v <= hi; v += step) allowed[v] = true;
    }
  } catch (const Error& e) {
    fail("the ", f.name, " field '", text, "': ", e.what());
  }
  return allowed;
}

}  // namespace

Cron Cron::parse(const std::string& expr) {
  // The shorthands cron (and croniter, behind Modal's Cron) know.
  static const std::pair<const char*, const char*> kShorthands[] = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  std::string body = expr;
  for (const auto& [name, fields] : kShorthands)
    if (expr == name) body = fields;
  std::vector<std::string> fields;
  std::string cur;
  for (char c : body + " ") {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) fields.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  try {
    if (fields.size() != 5)
      fail("it has ", fields.size(), " fields; it needs 5: minute hour day-of-month month day-of-week (e.g. '0 9 * * mon-fri')");
    Cron c;
    c.text_ = expr;
    bool star;
    auto m = parse_field(fields[0], {"minute", 0, 59, nullptr, 0}, &star);
    for (int i = 0; i < 60; i++) c.minutes_[i] = m[i];
    auto h = parse_field(fields[1], {"hour", 0, 23, nullptr, 0}, &star);
    for (int i = 0; i < 24; i++) c.hours_[i] = h[i];
    auto d = parse_field(fields[2], {"day-of-month", 1, 31, nullptr, 0}, &c.any_day_);
    for (int i = 1; i < 32; i++) c.days_[i] = d[i];
    auto mo = parse_field(fields[3], {"month", 1, 12, kMonths, 12}, &star);
    for (int i = 1; i < 13; i++) c.months_[i] = mo[i];
    auto w = parse_field(fields[4], {"day-of-week", 0, 7, kDays, 7}, &c.any_weekday_);
    for (int i = 0; i < 7; i++) c.weekdays_[i] = w[i];
    if (w[7]) c.weekdays_[0] = true;
    return c;
  } catch (const Error& e) {
    fail("Cron('", expr, "'): ", e.what());
  }
}

bool Cron::matches(const std::tm& t) const {
  if (!minutes_[t.tm_min] || !hours_[t.tm_hour] || !months_[t.tm_mon + 1]) return false;
  bool day = days_[t.tm_mday], weekday = weekdays_[t.tm_wday];
  // cron's rule: either day field starting with `*` makes both count; two
  // restricted ones match when either does.
  if (any_day_ || any_weekday_) return day && weekday;
  return day || weekday;
}

std::time_t Cron::next_after(std::time_t t, const TimeZone& tz) const {
  std::time_t m = (t / 60 + 1) * 60;  // the next whole minute
  // Hours that cannot match (wrong month or hour) are skipped whole, so
  // even a rare expression takes a bounded number of steps. (Across a
  // daylight-saving change an hour later is still the next local hour, or
  // the same one again: nothing that could match is skipped.)
  for (int steps = 0; steps < 5 * 366 * 24 * 60; steps++) {
    std::tm u = tz.local(m);
    if (!months_[u.tm_mon + 1] || (!hours_[u.tm_hour] && u.tm_min == 0)) {
      m += u.tm_min == 0 ? 3600 : 60;
      continue;
    }
    if (matches(u)) return m;
    m += 60;
  }
  fail("Cron('", text_, "') matches no minute in the next five years", tz.is_utc() ? "" : cat(" in ", tz.name()));
}

std::optional<Schedule> Schedule::from_config(const nlohmann::json& config) {
  if (!config.is_object() || !config.contains("schedule") || config["schedule"].is_null()) return std::nullopt;
  const auto& s = config["schedule"];
  Schedule out;
  if (s.contains("period_s")) {
    if (!s["period_s"].is_number() || !(s["period_s"].get<double>() >= 1))
      fail("schedule: the period must be at least 1 second");
    out.period_s_ = s["period_s"].get<double>();
    return out;
  }
  if (s.contains("cron") && s["cron"].is_string()) {
    out.cron_ = Cron::parse(s["cron"].get<std::string>());
    std::string tz = s.contains("timezone") && s["timezone"].is_string() ? s["timezone"].get<std::string>() : "UTC";
    out.tz_ = TimeZone::load(tz);
    return out;
  }
  fail("schedule: expected {\"period_s\": seconds} or {\"cron\": \"m h dom mon dow\"}, got ", s.dump());
}

std::time_t Schedule::next_after(std::time_t t) const {
  if (cron_) return cron_->next_after(t, *tz_);
  return t + static_cast<std::time_t>(std::ceil(period_s_));
}

std::string Schedule::describe() const {
  if (cron_) return cat("Cron('", cron_->text(), "'", tz_->is_utc() ? "" : cat(", timezone='", tz_->name(), "'"), ")");
  return cat("Period(seconds=", period_s_, ")");
}

std::string Schedule::time_text(std::time_t t) const {
  std::tm u;
  ::gmtime_r(&t, &u);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &u);
  std::string out = buf;
  if (tz_ && !tz_->is_utc()) {
    std::tm l = tz_->local(t);
    std::strftime(buf, sizeof buf, "%H:%M", &l);
    out += cat(" (", buf, " ", tz_->name(), ")");
  }
  return out;
}

}  // namespace thaw::runtime
