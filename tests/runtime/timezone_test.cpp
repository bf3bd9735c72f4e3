#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>

#include "common/error.h"
#include "runtime/schedule.h"
#include "runtime/timezone.h"
#include "time_helpers.h"

using thaw::runtime::Cron;
using thaw::runtime::Schedule;
using thaw::runtime::TimeZone;
using thaw::runtime::testing::utc;

namespace {

std::string error_of(const std::string& zone) {
  return thaw::runtime::testing::error_of([&] { TimeZone::load(zone); });
}

// What glibc says the offset is (its own reading of the same files).
long glibc_offset(const std::string& zone, std::time_t t) {
  ::setenv("TZ", (":" + zone).c_str(), 1);
  ::tzset();
  std::tm lt{};
  ::localtime_r(&t, &lt);
  return lt.tm_gmtoff;
}

// A version 2 TZif file with no transitions: only its footer rule says
// anything (as in zic's "slim" output for far-future dates).
std::string footer_only(const std::string& rule) {
  std::string block = "TZif2" + std::string(15, '\0');
  const unsigned counts[6] = {0, 0, 0, 0, 1, 4};  // one local time type, 4 chars of names
  for (unsigned c : counts) block += std::string{0, 0, 0, static_cast<char>(c)};
  block += std::string("\xff\xff\xb9\xb0\x00\x00", 6);  // utoff -18000, not DST, name at 0
  block += std::string("EST\0", 4);
  return block + block + "\n" + rule + "\n";
}

}  // namespace

TEST(TimeZone, NewYorkChangesAtTheKnownInstants) {
  auto z = TimeZone::load("America/New_York");
  // 2026: EDT from 8 March 02:00 EST (07:00 UTC) to 1 November 02:00 EDT (06:00 UTC).
  EXPECT_EQ(z.offset_at(utc(2026, 3, 8, 6, 59)), -5 * 3600);
  EXPECT_EQ(z.offset_at(utc(2026, 3, 8, 7, 0)), -4 * 3600);
  EXPECT_EQ(z.offset_at(utc(2026, 11, 1, 5, 59)), -4 * 3600);
  EXPECT_EQ(z.offset_at(utc(2026, 11, 1, 6, 0)), -5 * 3600);
  EXPECT_EQ(TimeZone::load("Asia/Kolkata").offset_at(utc(2026, 6, 1, 0, 0)), 5 * 3600 + 1800);
  auto syd = TimeZone::load("Australia/Sydney");  // southern: daylight time spans the new year
  EXPECT_EQ(syd.offset_at(utc(2026, 1, 15, 0, 0)), 11 * 3600);
  EXPECT_EQ(syd.offset_at(utc(2026, 7, 15, 0, 0)), 10 * 3600);
  EXPECT_TRUE(TimeZone::load("UTC").is_utc());
  EXPECT_EQ(TimeZone::load("Etc/UTC").offset_at(utc(2026, 7, 1, 0, 0)), 0);
}

TEST(TimeZone, AgreesWithGlibcFrom1970To2100) {
  // Far-future instants come from each file's footer rule, the rest from its
  // transitions; zones with half-hour, negative-time and southern rules.
  const char* zones[] = {"America/New_York", "Europe/London",   "Europe/Berlin",  "Australia/Sydney",
                         "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Chatham",
                         "America/Nuuk",     "Africa/Casablanca", "America/Santiago", "Asia/Tehran",
                         "America/St_Johns", "Pacific/Kiritimati"};
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::time_t> when(0, utc(2100, 1, 1, 0, 0));
  const char* saved = std::getenv("TZ");
  std::string saved_tz = saved ? saved : "";
  for (const char* name : zones) {
    auto z = TimeZone::load(name);
    for (int i = 0; i < 400; i++) {
      std::time_t t = when(rng);
      ASSERT_EQ(z.offset_at(t), glibc_offset(name, t)) << name << " at " << t;
    }
  }
  if (saved) ::setenv("TZ", saved_tz.c_str(), 1);
  else ::unsetenv("TZ");
  ::tzset();
}

TEST(TimeZone, FooterRuleAlone) {
  auto z = TimeZone::parse("test", footer_only("EST5EDT,M3.2.0,M11.1.0"));
  EXPECT_EQ(z.offset_at(utc(2026, 3, 8, 6, 59)), -5 * 3600);
  EXPECT_EQ(z.offset_at(utc(2026, 3, 8, 7, 0)), -4 * 3600);
  EXPECT_EQ(z.offset_at(utc(2026, 11, 1, 6, 0)), -5 * 3600);
  auto fixed = TimeZone::parse("test", footer_only("<+0530>-5:30"));
  EXPECT_EQ(fixed.offset_at(utc(2030, 1, 1, 0, 0)), 5 * 3600 + 1800);
  EXPECT_THROW(TimeZone::parse("test", footer_only("EST5EDT,M3.2")), thaw::Error);
  EXPECT_THROW(TimeZone::parse("test", "TZif2 too short"), thaw::Error);
}

TEST(TimeZone, UnknownZonesSayWhatToDo) {
  EXPECT_NE(error_of("Mars/Olympus_Mons").find("unknown time zone 'Mars/Olympus_Mons'"), std::string::npos);
  EXPECT_NE(error_of("Mars/Olympus_Mons").find("America/New_York"), std::string::npos);
  EXPECT_NE(error_of("../../etc/passwd").find("is not a zone name"), std::string::npos);
  EXPECT_NE(error_of("/etc/localtime").find("is not a zone name"), std::string::npos);
}

TEST(Cron, InATimeZone) {
  auto ny = TimeZone::load("America/New_York");
  // 09:00 New York time: 14:00 UTC in winter, 13:00 UTC once daylight time starts.
  auto nine = Cron::parse("0 9 * * *");
  EXPECT_EQ(nine.next_after(utc(2026, 3, 7, 15, 0), ny), utc(2026, 3, 8, 13, 0));
  EXPECT_EQ(nine.next_after(utc(2026, 3, 6, 12, 0), ny), utc(2026, 3, 6, 14, 0));
  // 02:30 does not happen on 8 March 2026 in New York.
  EXPECT_EQ(Cron::parse("30 2 * * *").next_after(utc(2026, 3, 7, 8, 0), ny), utc(2026, 3, 9, 6, 30));
  // 01:30 happens twice on 1 November 2026 (EDT, then EST).
  auto half_past_one = Cron::parse("30 1 * * *");
  EXPECT_EQ(half_past_one.next_after(utc(2026, 11, 1, 5, 0), ny), utc(2026, 11, 1, 5, 30));
  EXPECT_EQ(half_past_one.next_after(utc(2026, 11, 1, 5, 30), ny), utc(2026, 11, 1, 6, 30));
  // Half-hour offsets: 09:00 in Kolkata is 03:30 UTC.
  EXPECT_EQ(nine.next_after(utc(2026, 6, 1, 0, 0), TimeZone::load("Asia/Kolkata")), utc(2026, 6, 1, 3, 30));
}

TEST(Schedule, CronWithTimeZoneFromConfig) {
  auto s = Schedule::from_config({{"schedule", {{"cron", "0 9 * * mon-fri"}, {"timezone", "Europe/Berlin"}}}});
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->next_after(utc(2026, 11, 27, 9, 0)), utc(2026, 11, 30, 8, 0));  // Monday, CET = UTC+1
  EXPECT_EQ(s->describe(), "Cron('0 9 * * mon-fri', timezone='Europe/Berlin')");
  EXPECT_EQ(s->time_text(utc(2026, 11, 30, 8, 0)), "2026-11-30 08:00:00 UTC (09:00 Europe/Berlin)");
  EXPECT_THROW(Schedule::from_config({{"schedule", {{"cron", "0 9 * * *"}, {"timezone", "Nowhere/Land"}}}}),
               thaw::Error);
}
