// Spawned calls' results by id: read in the runtime that ran the call, in
// another runtime sharing the store, and never waited for when lost.
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/call_store.h"
#include "temp_dir.h"

namespace {

using nlohmann::json;
using thaw::runtime::CallStore;

class CallStoreTest : public ::testing::Test {
 protected:

  static json result(int v) { return {{"type", "result"}, {"ok", true}, {"value_json", v}}; }

  thaw::runtime::testing::TempDir dir_{"thaw-calls"};
  std::string home_ = dir_.path();
};

TEST_F(CallStoreTest, IdsLookRightAndOthersAreRefused) {
  CallStore calls(home_);
  std::string id = calls.begin("app.f");
  EXPECT_TRUE(CallStore::valid_id(id)) << id;
  EXPECT_NE(id, calls.begin("app.f"));
  for (const char* bad : {"fc-../../etc/passwd", "fc-", "xx-0123456789abcdef01234567", "fc-0123456789ABCDEF01234567"}) {
    json r = calls.wait(bad, 0.0);
    EXPECT_EQ(r["type"], "error") << bad;
    EXPECT_EQ(r["kind"], "not_found") << bad;
  }
  json r = calls.wait("fc-0123456789abcdef01234567", 0.0);
  EXPECT_EQ(r["kind"], "not_found");
  EXPECT_NE(r["error"].get<std::string>().find("never spawned"), std::string::npos) << r;
}

TEST_F(CallStoreTest, AWaiterInTheSameRuntimeIsWokenWithTheResult) {
  CallStore calls(home_);
  std::string id = calls.begin("app.f");
  EXPECT_EQ(calls.wait(id, 0.0)["type"], "timeout");
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    calls.finish(id, result(7));
  });
  json r = calls.wait(id, std::nullopt);
  finisher.join();
  EXPECT_EQ(r, result(7));
  // Read again later (from the file): results are kept, not consumed.
  EXPECT_EQ(calls.wait(id, 0.0), result(7));
}

TEST_F(CallStoreTest, AnotherRuntimeReadsTheResultWhenItIsDone) {
  CallStore running(home_), other(home_);
  std::string id = running.begin("app.f");
  EXPECT_EQ(other.wait(id, 0.1)["type"], "timeout");
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    running.finish(id, result(42));
  });
  json r = other.wait(id, 30.0);
  finisher.join();
  EXPECT_EQ(r, result(42));
}

TEST_F(CallStoreTest, ACallWhoseRuntimeStoppedIsLostNotWaitedFor) {
  auto running = std::make_unique<CallStore>(home_);
  CallStore other(home_);
  std::string id = running->begin("app.slow");
  EXPECT_EQ(other.wait(id, 0.0)["type"], "timeout");
  running.reset();  // the runtime stops before the call finishes
  json r = other.wait(id, std::nullopt);
  EXPECT_EQ(r["type"], "error");
  EXPECT_EQ(r["kind"], "lost");
  EXPECT_NE(r["error"].get<std::string>().find("app.slow"), std::string::npos) << r;
}

TEST_F(CallStoreTest, ACallWhoseRuntimeCrashedIsLost) {
  // A runtime that dies without cleaning up leaves its owner lock file;
  // nobody holds the lock any more.
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    CallStore crashed(home_);
    std::string id = crashed.begin("app.crashed");
    (void)!::write(p[1], id.data(), id.size());
    ::_exit(0);  // no destructors: the lock file stays
  }
  ::close(p[1]);
  char buf[64] = {};
  ssize_t n = ::read(p[0], buf, sizeof buf - 1);
  ::close(p[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_GT(n, 0);
  CallStore other(home_);
  json r = other.wait(std::string(buf, n), std::nullopt);
  EXPECT_EQ(r["kind"], "lost") << r;
  EXPECT_NE(r["error"].get<std::string>().find("app.crashed"), std::string::npos) << r;
}

TEST_F(CallStoreTest, AWaitEndsWhenItsAskerHasGone) {
  CallStore running(home_), other(home_);
  std::string id = running.begin("app.f");
  int asks = 0;
  EXPECT_EQ(running.wait(id, std::nullopt, [&] { return ++asks > 2; })["type"], "timeout");
  asks = 0;
  EXPECT_EQ(other.wait(id, std::nullopt, [&] { return ++asks > 2; })["type"], "timeout");
  // A limit beyond any time_point is no limit, not a wait already over.
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    running.finish(id, result(3));
  });
  EXPECT_EQ(other.wait(id, 1e300), result(3));
  finisher.join();
}

TEST_F(CallStoreTest, ACancelReachesTheRuntimeRunningTheCall) {
  CallStore running(home_), other(home_);
  std::string a = running.begin("app.f"), b = running.begin("app.g");
  auto a_cancelled = running.cancel_check(a), b_cancelled = running.cancel_check(b);
  EXPECT_FALSE(a_cancelled());
  EXPECT_EQ(running.cancel(a)["type"], "cancelling");  // here
  EXPECT_EQ(other.cancel(b)["type"], "cancelling");    // from another runtime
  EXPECT_TRUE(a_cancelled());
  EXPECT_TRUE(b_cancelled());
  running.finish(a, result(1));
  EXPECT_EQ(other.cancel(a)["type"], "done");
  EXPECT_EQ(other.cancel("fc-0123456789abcdef01234567")["kind"], "not_found");
  EXPECT_FALSE(running.cancel_check("fc-0123456789abcdef01234567")());
}

TEST_F(CallStoreTest, SweepRemovesOnlyExpiredResults) {
  CallStore calls(home_);
  std::string old_id = calls.begin("app.f"), new_id = calls.begin("app.f");
  calls.finish(old_id, result(1));
  calls.finish(new_id, result(2));
  std::string old_path = home_ + "/function-calls/" + old_id + ".json";
  struct timeval eight_days_ago[2] = {{::time(nullptr) - 8 * 86400, 0}, {::time(nullptr) - 8 * 86400, 0}};
  ASSERT_EQ(::utimes(old_path.c_str(), eight_days_ago), 0);
  calls.sweep();
  EXPECT_EQ(calls.wait(old_id, 0.0)["kind"], "not_found");
  EXPECT_EQ(calls.wait(new_id, 0.0), result(2));
}

}  // namespace
