// Restore shells hold one read image each; a snapshot recreated or removed
// under them must never be restored from the stale copy.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "common/error.h"
#include "image/image.h"
#include "runtime/restore_shells.h"
#include "temp_dir.h"

namespace {

using thaw::runtime::RestoreShells;

class RestoreShellsTest : public ::testing::Test {
 protected:

  // An image as the engine publishes one: written aside, renamed in place.
  void write_image(int pid) {
    std::string fresh = base_ + "/image.new";
    {
      thaw::image::Writer w(fresh);
      thaw::image::Manifest m;
      m.process.pid = pid;
      w.commit(m);
    }
    thaw::image::remove_tree(image_);
    ASSERT_EQ(::rename(fresh.c_str(), image_.c_str()), 0);
  }

  thaw::runtime::Log log_{2};
  thaw::runtime::Context ctx_{thaw::runtime::Store("/nonexistent"), log_, THAW_EXE, "", "", "", {}};
  thaw::runtime::testing::TempDir dir_{"thaw-shells"};
  std::string base_ = dir_.path(), image_ = base_ + "/image";
};

TEST_F(RestoreShellsTest, OneShellPerImageUntilTheImageIsReplaced) {
  write_image(100);
  RestoreShells shells(ctx_);
  auto first = shells.get(image_);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->usable());
  EXPECT_EQ(shells.get(image_), first);  // read once, used again

  write_image(200);  // the snapshot is recreated
  auto second = shells.get(image_);
  EXPECT_NE(second, first);
  EXPECT_TRUE(second->usable());
}

TEST_F(RestoreShellsTest, PruneStopsTheShellOfARemovedImage) {
  write_image(100);
  RestoreShells shells(ctx_);
  std::weak_ptr<thaw::container::RestoreShell> shell = shells.get(image_);
  thaw::image::remove_tree(image_);  // the snapshot is retired
  shells.prune();
  EXPECT_TRUE(shell.expired());
  EXPECT_THROW(shells.get(image_), thaw::Error);
}

TEST_F(RestoreShellsTest, AShellThatEndedIsReplaced) {
  write_image(100);
  RestoreShells shells(ctx_);
  auto first = shells.get(image_);
  shells.forget(image_);
  EXPECT_NE(shells.get(image_), first);
}

TEST_F(RestoreShellsTest, AnUnreadableImageIsReportedWithItsReason) {
  write_image(100);
  ASSERT_EQ(::truncate((image_ + "/" + thaw::image::kManifestName).c_str(), 3), 0);
  RestoreShells shells(ctx_);
  try {
    shells.get(image_);
    FAIL() << "a corrupt image was accepted";
  } catch (const thaw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("restore shell of " + image_), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("manifest"), std::string::npos) << e.what();
  }
}

}  // namespace
