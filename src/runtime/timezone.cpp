#include "runtime/timezone.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "common/error.h"
#include "common/io.h"

namespace thaw::runtime {

namespace {

const char* const kUtcNames[] = {"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "Zulu", "Universal", "Etc/Universal"};

uint64_t be(const std::string& d, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v = (v << 8) | static_cast<unsigned char>(d[at + i]);
  return v;
}

int64_t be_signed(const std::string& d, size_t at, int bytes) {
  uint64_t v = be(d, at, bytes);
  if (bytes == 4) return static_cast<int32_t>(static_cast<uint32_t>(v));
  return static_cast<int64_t>(v);
}

bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// Seconds since the epoch of midnight UTC starting day `yday` (0-based) of `year`.
std::time_t year_day(int year, int yday) {
  std::tm t{};
  t.tm_year = year - 1900;
  t.tm_mday = 1 + yday;  // timegm normalises past the end of January
  return ::timegm(&t);
}

// A reader of the POSIX TZ string grammar, failing with the whole string.
struct RuleReader {
  const std::string& zone;
  const std::string& s;
  size_t i = 0;

  [[noreturn]] void bad(const char* what) const {
    fail("time zone '", zone, "': its rule '", s, "' is not a POSIX TZ string (", what, " at character ", i + 1,
         ")");
  }
  bool at(char c) const { return i < s.size() && s[i] == c; }
  void name() {
    if (at('<')) {
      size_t end = s.find('>', i);
      if (end == std::string::npos) bad("an unclosed <name>");
      i = end + 1;
      return;
    }
    size_t from = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) i++;
    if (i - from < 3) bad("a zone abbreviation of fewer than 3 letters");
  }
  int number(int max) {
    size_t from = i;
    int v = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && i - from < 4) v = v * 10 + (s[i++] - '0');
    if (i == from || v > max) bad("a number out of range");
    return v;
  }
  // [+-]hh[:mm[:ss]] in seconds; hours up to 167 (RFC 8536's extension).
  int32_t clock(bool allow_sign) {
    int sign = 1;
    if (allow_sign && (at('+') || at('-'))) sign = s[i++] == '-' ? -1 : 1;
    int32_t v = number(167) * 3600;
    if (at(':')) {
      i++;
      v += number(59) * 60;
      if (at(':')) {
        i++;
        v += number(59);
      }
    }
    return sign * v;
  }
};

}  // namespace

TimeZone::Rule TimeZone::parse_rule(const std::string& zone, const std::string& s) {
  RuleReader r{zone, s};
  Rule rule;
  r.name();
  // POSIX offsets are west of UTC ("EST5"): east is the negation.
  rule.std_offset = -r.clock(true);
  if (r.i == s.size()) return rule;
  rule.dst = true;
  r.name();
  rule.dst_offset = rule.std_offset + 3600;
  if (!r.at(',')) rule.dst_offset = -r.clock(true);
  if (!r.at(',')) r.bad("no ',' before the start of daylight time");
  for (Rule::When* w : {&rule.start, &rule.end}) {
    r.i++;  // the ','
    if (r.at('M')) {
      r.i++;
      w->kind = 'M';
      w->month = r.number(12);
      if (!r.at('.')) r.bad("no '.' in Mm.w.d");
      r.i++;
      w->week = r.number(5);
      if (!r.at('.')) r.bad("no '.' in Mm.w.d");
      r.i++;
      w->day = r.number(6);
      if (w->month < 1 || w->week < 1) r.bad("a month or week of 0");
    } else if (r.at('J')) {
      r.i++;
      w->kind = 'J';
      w->day = r.number(365);
      if (w->day < 1) r.bad("day J0");
    } else {
      w->kind = 'D';
      w->day = r.number(365);
    }
    if (r.at('/')) {
      r.i++;
      w->time = r.clock(true);
    }
    if (w == &rule.start && !r.at(',')) r.bad("no ',' before the end of daylight time");
  }
  if (r.i != s.size()) r.bad("text after the rule");
  return rule;
}

// The instant a rule's start or end happens in `year`, its time being local
// time at `offset` (the offset in effect just before it).
std::time_t TimeZone::rule_instant(const Rule::When& w, int year, int32_t offset) {
  int yday = 0;
  if (w.kind == 'J') {
    yday = w.day - 1 + (is_leap(year) && w.day >= 60 ? 1 : 0);  // Feb 29 is never counted
  } else if (w.kind == 'D') {
    yday = w.day;
  } else {
    static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    std::time_t first = year_day(year, 0);
    std::tm ft{};
    // Day of the year the month starts on.
    for (int m = 1; m < w.month; m++) yday += kDays[m - 1] + (m == 2 && is_leap(year) ? 1 : 0);
    std::time_t month_start = first + static_cast<std::time_t>(yday) * 86400;
    ::gmtime_r(&month_start, &ft);
    int day = (w.day - ft.tm_wday + 7) % 7 + 7 * (w.week - 1);  // 0-based day of the month
    int month_days = kDays[w.month - 1] + (w.month == 2 && is_leap(year) ? 1 : 0);
    while (day >= month_days) day -= 7;  // week 5: the last such day
    yday += day;
  }
  return year_day(year, yday) + w.time - offset;
}

int32_t TimeZone::rule_offset(std::time_t t) const {
  if (!rule_.dst) return rule_.std_offset;
  std::time_t local = t + rule_.std_offset;
  std::tm lt{};
  ::gmtime_r(&local, &lt);
  int year = lt.tm_year + 1900;
  std::time_t start = rule_instant(rule_.start, year, rule_.std_offset);
  std::time_t end = rule_instant(rule_.end, year, rule_.dst_offset);
  // Southern hemisphere: daylight time spans the new year.
  bool in_dst = start < end ? (t >= start && t < end) : (t < end || t >= start);
  return in_dst ? rule_.dst_offset : rule_.std_offset;
}

TimeZone TimeZone::parse(const std::string& name, const std::string& d) {
  auto bad = [&](const char* what) -> TimeZone {
    fail("time zone '", name, "': its zoneinfo file is not valid TZif (", what,
         "); reinstall the tzdata package");
  };
  if (d.size() < 44 || d.compare(0, 4, "TZif") != 0) return bad("no TZif header");
  int version = d[4] == 0 ? 1 : d[4] - '0';
  size_t at = 0;
  int time_bytes = 4;
  if (version >= 2) {
    // Skip the version 1 block: the 64-bit one follows, then the footer.
    auto c = [&](int k) { return be(d, 20 + 4 * k, 4); };
    uint64_t v1 = 44 + c(3) * 5 + c(4) * 6 + c(5) + c(2) * 8 + c(1) + c(0);
    if (v1 + 44 > d.size()) return bad("truncated");
    at = v1;
    time_bytes = 8;
    if (d.compare(at, 4, "TZif") != 0) return bad("no second header");
  }
  auto count = [&](int k) { return be(d, at + 20 + 4 * k, 4); };
  uint64_t isut = count(0), isstd = count(1), leap = count(2), timecnt = count(3), typecnt = count(4),
           charcnt = count(5);
  if (typecnt == 0) return bad("no local time types");
  size_t p = at + 44;
  uint64_t need = timecnt * (time_bytes + 1) + typecnt * 6 + charcnt + leap * (time_bytes + 4) + isstd + isut;
  if (p + need > d.size()) return bad("truncated");
  TimeZone z;
  z.name_ = name;
  std::vector<int32_t> type_offsets;
  size_t types_at = p + timecnt * (time_bytes + 1);
  for (uint64_t k = 0; k < typecnt; k++) type_offsets.push_back(static_cast<int32_t>(be_signed(d, types_at + 6 * k, 4)));
  for (uint64_t k = 0; k < timecnt; k++) {
    z.transitions_.push_back(be_signed(d, p + k * time_bytes, time_bytes));
    uint8_t type = static_cast<uint8_t>(d[p + timecnt * time_bytes + k]);
    if (type >= typecnt) return bad("a transition to a local time type that does not exist");
    z.offsets_.push_back(type_offsets[type]);
  }
  if (!std::is_sorted(z.transitions_.begin(), z.transitions_.end())) return bad("transitions out of order");
  z.first_offset_ = type_offsets[0];
  if (version >= 2) {
    size_t f = p + need;
    if (f < d.size() && d[f] == '\n') {
      size_t e = d.find('\n', f + 1);
      if (e == std::string::npos) return bad("an unterminated footer");
      std::string footer = d.substr(f + 1, e - f - 1);
      if (!footer.empty()) {
        z.rule_ = parse_rule(name, footer);
        z.has_rule_ = true;
      }
    }
  }
  if (z.transitions_.empty() && !z.has_rule_) {
    z.rule_.std_offset = z.first_offset_;
    z.has_rule_ = true;
  }
  return z;
}

TimeZone TimeZone::load(const std::string& name) {
  if (std::find(std::begin(kUtcNames), std::end(kUtcNames), name) != std::end(kUtcNames)) {
    TimeZone z;
    z.name_ = name;
    z.has_rule_ = true;
    return z;
  }
  // A name, not a path: nothing outside the zoneinfo directory is read.
  bool ok = !name.empty() && name[0] != '/' && name.find("..") == std::string::npos &&
            std::all_of(name.begin(), name.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' || c == '-' || c == '+';
            });
  if (!ok) fail("time zone '", name, "' is not a zone name; use an IANA name such as 'America/New_York'");
  const char* dir = std::getenv("TZDIR");
  std::string path = std::string(dir && *dir ? dir : "/usr/share/zoneinfo") + "/" + name;
  std::string data;
  if (!try_read_file(path, &data))
    fail("unknown time zone '", name, "' (no ", path, "); use an IANA name such as 'America/New_York' or 'UTC'",
         " (the zones come from the Debian package tzdata)");
  return parse(name, data);
}

int32_t TimeZone::offset_at(std::time_t t) const {
  if (transitions_.empty() || t < transitions_.front()) return transitions_.empty() ? rule_offset(t) : first_offset_;
  if (t >= transitions_.back() && has_rule_) return rule_offset(t);
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), static_cast<int64_t>(t));
  return offsets_[static_cast<size_t>(it - transitions_.begin()) - 1];
}

std::tm TimeZone::local(std::time_t t) const {
  std::time_t l = t + offset_at(t);
  std::tm out{};
  ::gmtime_r(&l, &out);
  return out;
}

}  // namespace thaw::runtime
