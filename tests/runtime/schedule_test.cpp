#include <gtest/gtest.h>

#include "common/error.h"
#include "runtime/schedule.h"
#include "time_helpers.h"

using thaw::runtime::Cron;
using thaw::runtime::Schedule;
using thaw::runtime::TimeZone;
using thaw::runtime::testing::utc;

namespace {

const TimeZone kUtc = TimeZone::load("UTC");

std::string error_of(const std::string& expr) {
  return thaw::runtime::testing::error_of([&] { Cron::parse(expr); });
}

}  // namespace

TEST(Cron, EveryMinuteIsTheNextWholeMinute) {
  auto c = Cron::parse("* * * * *");
  EXPECT_EQ(c.next_after(utc(2026, 11, 27, 10, 0, 0), kUtc), utc(2026, 11, 27, 10, 1));
  EXPECT_EQ(c.next_after(utc(2026, 11, 27, 10, 0, 59), kUtc), utc(2026, 11, 27, 10, 1));
}

TEST(Cron, StepsRangesListsAndNames) {
  EXPECT_EQ(Cron::parse("*/15 * * * *").next_after(utc(2026, 1, 1, 0, 16), kUtc), utc(2026, 1, 1, 0, 30));
  EXPECT_EQ(Cron::parse("5,50 9-17/4 * * *").next_after(utc(2026, 1, 1, 9, 50), kUtc), utc(2026, 1, 1, 13, 5));
  // 2026-11-27 is a Friday: weekdays only goes to Monday the 30th.
  EXPECT_EQ(Cron::parse("0 9 * * mon-fri").next_after(utc(2026, 11, 27, 9, 0), kUtc), utc(2026, 11, 30, 9, 0));
  EXPECT_EQ(Cron::parse("0 0 1 JAN *").next_after(utc(2026, 11, 27, 0, 0), kUtc), utc(2027, 1, 1, 0, 0));
  EXPECT_EQ(Cron::parse("30 6 * * 7").next_after(utc(2026, 11, 27, 0, 0), kUtc), utc(2026, 11, 29, 6, 30));  // Sunday
}

TEST(Cron, BothDayFieldsRestrictedMatchEither) {
  // The 1st of the month or any Monday, as cron does.
  auto c = Cron::parse("0 12 1 * mon");
  EXPECT_EQ(c.next_after(utc(2026, 11, 27, 0, 0), kUtc), utc(2026, 11, 30, 12, 0));  // Monday the 30th
  EXPECT_EQ(c.next_after(utc(2026, 11, 30, 12, 0), kUtc), utc(2026, 12, 1, 12, 0));  // the 1st (a Tuesday)
}

TEST(Cron, LeapDayAndImpossibleDates) {
  EXPECT_EQ(Cron::parse("0 0 29 2 *").next_after(utc(2026, 3, 1, 0, 0), kUtc), utc(2028, 2, 29, 0, 0));
  EXPECT_THROW(Cron::parse("0 0 30 2 *").next_after(utc(2026, 1, 1, 0, 0), kUtc), thaw::Error);
}

TEST(Cron, BadExpressionsNameWhatIsWrong) {
  EXPECT_NE(error_of("* * * *").find("it has 4 fields; it needs 5"), std::string::npos);
  EXPECT_NE(error_of("60 * * * *").find("the minute field '60': 60 is outside 0-59"), std::string::npos);
  EXPECT_NE(error_of("* * * foo *").find("the month field 'foo': 'foo' is not a number or a name"), std::string::npos);
  EXPECT_NE(error_of("*/0 * * * *").find("step '0' is not a positive number"), std::string::npos);
  EXPECT_NE(error_of("* 5-2 * * *").find("range 5-2 runs backwards"), std::string::npos);
}

TEST(Schedule, FromConfig) {
  EXPECT_FALSE(Schedule::from_config({{"timeout", 300}}).has_value());
  auto p = Schedule::from_config({{"schedule", {{"period_s", 90}}}});
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->next_after(1000), 1090);
  EXPECT_EQ(p->describe(), "Period(seconds=90)");
  auto c = Schedule::from_config({{"schedule", {{"cron", "0 * * * *"}, {"timezone", "UTC"}}}});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->next_after(utc(2026, 1, 1, 5, 30)), utc(2026, 1, 1, 6, 0));
  EXPECT_THROW(Schedule::from_config({{"schedule", {{"period_s", 0}}}}), thaw::Error);
}

TEST(Cron, AsViXieCronReadsTheEdges) {
  // A day field starting with `*` counts as unrestricted: every other day of
  // the month AND Mondays, not either.
  auto c = Cron::parse("0 0 */2 * mon");
  EXPECT_EQ(c.next_after(utc(2026, 11, 27, 0, 0), kUtc), utc(2026, 12, 7, 0, 0));  // Monday the 7th (odd)
  EXPECT_EQ(Cron::parse("0 8 * * mon-sun").next_after(utc(2026, 11, 29, 9, 0), kUtc), utc(2026, 11, 30, 8, 0));
  EXPECT_EQ(Cron::parse("0 8 * * fri-sun").next_after(utc(2026, 11, 28, 9, 0), kUtc), utc(2026, 11, 29, 8, 0));
  EXPECT_EQ(Cron::parse("0005 * * * *").next_after(utc(2026, 1, 1, 0, 0), kUtc), utc(2026, 1, 1, 0, 5));
  EXPECT_NE(error_of("0000060 * * * *").find("0000060 is outside 0-59"), std::string::npos);
}

TEST(Cron, Shorthands) {
  EXPECT_EQ(Cron::parse("@hourly").next_after(utc(2026, 1, 1, 5, 30), kUtc), utc(2026, 1, 1, 6, 0));
  EXPECT_EQ(Cron::parse("@daily").next_after(utc(2026, 1, 1, 5, 30), kUtc), utc(2026, 1, 2, 0, 0));
  EXPECT_EQ(Cron::parse("@weekly").next_after(utc(2026, 11, 27, 0, 0), kUtc), utc(2026, 11, 29, 0, 0));
  EXPECT_EQ(Cron::parse("@monthly").next_after(utc(2026, 11, 27, 0, 0), kUtc), utc(2026, 12, 1, 0, 0));
  EXPECT_EQ(Cron::parse("@yearly").next_after(utc(2026, 11, 27, 0, 0), kUtc), utc(2027, 1, 1, 0, 0));
  EXPECT_NE(error_of("@often").find("it has 1 fields"), std::string::npos);
}
