// The sweep of $THAW_HOME/serialized/: what an app's current version names,
// a process holds or a deploy under way may need stays; the rest goes.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/serialized_files.h"
#include "temp_dir.h"

namespace {

using nlohmann::json;
using thaw::runtime::DeployingSerialized;
using thaw::runtime::Log;
using thaw::runtime::Store;

class SerializedFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ + "/serialized");
    null_ = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  }
  void TearDown() override { ::close(null_); }

  std::string pickle(const std::string& sha) {
    std::string p = dir_ + "/serialized/" + sha + ".pkl";
    std::ofstream(p) << "pickle";
    return p;
  }
  bool there(const std::string& sha) { return std::filesystem::exists(dir_ + "/serialized/" + sha + ".pkl"); }
  // A deployed version of `app` whose function `fn` is serialized as `sha`.
  void deploy(Store& store, const std::string& app, int version, const std::string& sha) {
    json entry = {{"kind", "function"},
                  {"serialized_function", {{"sha256", sha}, {"path", dir_ + "/serialized/" + sha + ".pkl"}}}};
    store.write_version(app, version, {{"introspection", {{"functions", {{"fn", entry}}}}}});
    store.set_current(app, version);
  }

  thaw::runtime::testing::TempDir tmp_{"thaw-serialized"};
  std::string dir_ = tmp_.path();
  int null_ = -1;
};

TEST_F(SerializedFilesTest, OnlyWhatNothingUsesIsRemoved) {
  Store store(dir_);
  Log log(null_);
  pickle("current");
  pickle("replaced");
  pickle("stopped");
  pickle("held");
  pickle("unused");
  deploy(store, "a", 1, "replaced");
  deploy(store, "a", 2, "current");  // v1 is no longer current: a rollback pickles afresh
  deploy(store, "b", 1, "stopped");
  store.stop_app("b");
  auto held = thaw::runtime::hold_serialized(dir_ + "/serialized/held.pkl");
  ASSERT_TRUE(held);
  EXPECT_EQ(thaw::runtime::sweep_serialized(store, log), 3);
  EXPECT_TRUE(there("current"));
  EXPECT_TRUE(there("held"));
  EXPECT_FALSE(there("replaced") || there("stopped") || there("unused"));
  held.reset();  // its process let go
  EXPECT_EQ(thaw::runtime::sweep_serialized(store, log), 1);
  EXPECT_FALSE(there("held"));
  EXPECT_TRUE(there("current"));
}

TEST_F(SerializedFilesTest, NothingGoesWhileADeployIsUnderWay) {
  Store store(dir_);
  Log log(null_);
  pickle("introspected");  // named by no record yet
  {
    DeployingSerialized deploying(store);
    EXPECT_EQ(thaw::runtime::sweep_serialized(store, log), 0);
    EXPECT_TRUE(there("introspected"));
  }
  EXPECT_EQ(thaw::runtime::sweep_serialized(store, log), 1);
}

TEST_F(SerializedFilesTest, AWritersFreshTemporaryFileStaysAndNoDirectoryIsFine) {
  Store store(dir_);
  Log log(null_);
  std::ofstream(dir_ + "/serialized/.abc.1.2.tmp") << "half";
  EXPECT_EQ(thaw::runtime::sweep_serialized(store, log), 0);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/serialized/.abc.1.2.tmp"));
  Store empty(dir_ + "/nothing-here");
  EXPECT_EQ(thaw::runtime::sweep_serialized(empty, log), 0);
  EXPECT_FALSE(thaw::runtime::hold_serialized(dir_ + "/serialized/missing.pkl"));
}

}  // namespace
