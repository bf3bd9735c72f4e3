// container/fsutil.h: remove_tree on trees whose paths outgrow PATH_MAX,
// as a container's /dev/shm copied into a snapshot's image may hold.
#include "container/fsutil.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/unique_fd.h"
#include "temp_dir.h"

namespace thaw::container {
namespace {

using runtime::testing::TempDir;

TEST(RemoveTree, RemovesATreeWhosePathsOutgrowPathMax) {
  TempDir tmp("thaw-fsutil");
  std::string top = tmp.path() + "/image";
  ASSERT_EQ(::mkdir(top.c_str(), 0700), 0);
  const std::string name(200, 'd');
  UniqueFd dir(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  size_t depth = PATH_MAX / name.size() + 2;
  for (size_t i = 0; i < depth; i++) {
    ASSERT_EQ(::mkdirat(dir.get(), name.c_str(), 0700), 0) << i;
    dir = UniqueFd(::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir) << i;
  }
  UniqueFd file(::openat(dir.get(), "deepest", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  ASSERT_TRUE(file);
  ASSERT_GT(top.size() + depth * (name.size() + 1), size_t(PATH_MAX));
  try {
    remove_tree(top);
  } catch (const Error& e) {
    FAIL() << e.what();
  }
  struct stat st;
  EXPECT_NE(::lstat(top.c_str(), &st), 0) << "left behind";
}

}  // namespace
}  // namespace thaw::container
