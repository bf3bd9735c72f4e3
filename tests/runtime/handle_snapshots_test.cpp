// Handles' own snapshots (Cls.with_options): at most N per function, the
// least recently called removed first, one locked by its maker left alone.
#include <sys/stat.h>

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
  note_handle_snapshot_used(*store_, "k1");  // called after k2 and k3 were made
  auto removed = make_room_for_handle_snapshot(*store_, target("k4"), 2, log_);
  EXPECT_EQ(removed, (std::vector<std::string>{store_->snapshot_image("k2"), store_->snapshot_image("k3")}));
  EXPECT_TRUE(store_->has_image("k1"));
  EXPECT_TRUE(store_->has_image("base"));
  EXPECT_TRUE(store_->has_image("other"));
  EXPECT_FALSE(thaw::container::exists(store_->snapshot_dir("k2")));
  // Room enough already: nothing more goes.
  EXPECT_TRUE(make_room_for_handle_snapshot(*store_, target("k4"), 2, log_).empty());
}

TEST_F(HandleSnapshots, OneBeingMadeIsLeftAlone) {
  make("k1", "Model", true);
  make("k2", "Model", true);
  auto busy = store_->lock_snapshot("k1");
  auto removed = make_room_for_handle_snapshot(*store_, target("k3"), 2, log_);
  EXPECT_EQ(removed, (std::vector<std::string>{store_->snapshot_image("k2")}));
  EXPECT_TRUE(store_->has_image("k1"));
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
