// Handles' own snapshots (Cls.with_options): at most N per function, the
// least recently called removed first, one locked by its maker left alone,
// the records of refused ones capped apart;
// and a lock whose file was removed under its waiter is not held twice.
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "container/fsutil.h"
#include "runtime/handle_snapshots.h"
#include "temp_dir.h"

namespace {

using nlohmann::json;
using namespace thaw::runtime;

class HandleSnapshots : public ::testing::Test {
 protected:
  void SetUp() override { store_ = std::make_unique<Store>(home_.path()); }

  // A snapshot with an image, of app.fn, a handle's or not.
  void make(const std::string& key, const std::string& fn, bool handle) {
    thaw::container::mkdir_p(store_->snapshot_image(key));
    std::ofstream(store_->snapshot_image(key) + "/thaw-image.json") << "{}";
    store_->write_meta(key, {{"app", "app"}, {"function", fn}, {"handle", handle}});
    if (handle) mark_handle_snapshot_made(*store_, key);
    // Distinct times, in the order made.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  Target target(const std::string& key) {
    Target t;
    t.app = "app";
    t.fn.name = "Model";
    t.key = key;
    t.own_snapshot = true;
    return t;
  }

  thaw::runtime::testing::TempDir home_{"thaw-handles"};
  std::unique_ptr<Store> store_;
  Log log_{-1};
};

TEST_F(HandleSnapshots, TheLeastRecentlyCalledGoFirst) {
  make("k1", "Model", true);
  make("k2", "Model", true);
  make("k3", "Model", true);
  make("base", "Model", false);   // the deployed snapshot: never evicted
  make("other", "Other", true);   // another function's
  EXPECT_TRUE(note_handle_snapshot_used(*store_, "k1"));  // called after k2 and k3 were made
  EXPECT_FALSE(note_handle_snapshot_used(*store_, "k9"));  // none: nothing made
  auto removed = make_room_for_handle_snapshot(*store_, target("k4"), 2, log_);
  EXPECT_EQ(removed, (std::vector<std::string>{store_->snapshot_image("k2"), store_->snapshot_image("k3")}));
  EXPECT_TRUE(store_->has_image("k1"));
  EXPECT_TRUE(store_->has_image("base"));
  EXPECT_TRUE(store_->has_image("other"));
  EXPECT_FALSE(thaw::container::exists(store_->snapshot_dir("k2")));
  // Room enough already: nothing more goes.
  EXPECT_TRUE(make_room_for_handle_snapshot(*store_, target("k4"), 2, log_).empty());
}

TEST_F(HandleSnapshots, RecordsOfRefusedOnesAreCappedApart) {
  auto refuse = [&](const std::string& key) {
    store_->write_meta(key, {{"app", "app"}, {"function", "Model"}, {"handle", true},
                             {"create_failed", {{"reason", "a socket"}}}});
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  };
  make("k1", "Model", true);
  for (size_t i = 1; i <= 2 * kRefusedRecordsPerSnapshot + 1; i++) refuse(thaw::cat("r", i));
  // The newest refused just now: the oldest other record goes, no image does.
  EXPECT_TRUE(make_room_for_handle_snapshot(*store_, target(thaw::cat("r", 2 * kRefusedRecordsPerSnapshot + 1)), 2, log_)
                  .empty());
  EXPECT_FALSE(thaw::container::exists(store_->snapshot_dir("r1")));
  EXPECT_TRUE(store_->read_meta("r2").has_value());
  EXPECT_TRUE(store_->has_image("k1"));
  // A snapshot made leaves the records alone (under the cap).
  EXPECT_TRUE(make_room_for_handle_snapshot(*store_, target("k2"), 2, log_).empty());
  EXPECT_TRUE(store_->read_meta("r2").has_value() && store_->read_meta("r3").has_value());
  EXPECT_EQ(store_->snapshot_keys().size(), 2 * kRefusedRecordsPerSnapshot + 1);  // k1 and 16 records
}

TEST_F(HandleSnapshots, OneBeingMadeIsLeftAlone) {
  make("k1", "Model", true);
  make("k2", "Model", true);
  auto busy = store_->lock_snapshot("k1");
  auto removed = make_room_for_handle_snapshot(*store_, target("k3"), 2, log_);
  EXPECT_EQ(removed, (std::vector<std::string>{store_->snapshot_image("k2")}));
  EXPECT_TRUE(store_->has_image("k1"));
}

TEST_F(HandleSnapshots, ALockRemovedUnderAWaiterIsNotHeldTwice) {
  // A holds the lock of a snapshot it removes; B waits for it meanwhile.
  std::string path = store_->snapshot_dir("k1") + ".lock";
  auto a = std::make_unique<FileLock>(path);
  std::atomic<bool> b_holds{false};
  std::thread b([&] {
    FileLock mine(path);
    b_holds = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    b_holds = false;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // B waits on the old file
  ::unlink(path.c_str());
  a.reset();
  // C opens the path anew: it must not get the lock while B holds it.
  while (!b_holds) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(FileLock::try_lock(path).has_value());
  b.join();
  EXPECT_TRUE(FileLock::try_lock(path).has_value());
}

TEST(HandleSnapshotsEnv, TheCapComesFromTheEnvironment) {
  ::unsetenv("THAW_MAX_HANDLE_SNAPSHOTS");
  EXPECT_EQ(max_handle_snapshots_from_env(), kDefaultMaxHandleSnapshots);
  ::setenv("THAW_MAX_HANDLE_SNAPSHOTS", "3", 1);
  EXPECT_EQ(max_handle_snapshots_from_env(), 3);
  for (const char* bad : {"0", "-1", "two", "3x"}) {
    ::setenv("THAW_MAX_HANDLE_SNAPSHOTS", bad, 1);
    EXPECT_THROW(max_handle_snapshots_from_env(), thaw::Error) << bad;
  }
  ::unsetenv("THAW_MAX_HANDLE_SNAPSHOTS");
}

}  // namespace
