// The working-set file beside an image is advice: it round-trips, and any
// file that does not belong to the image or is damaged reads as empty.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

#include "image/image.h"
#include "image/working_set.h"

namespace {

using thaw::image::load_working_set;
using thaw::image::store_working_set;

constexpr uint64_t kId = 0x1234abcd5678ef90ull;
constexpr uint64_t kPages = 64ull << 20;

class WorkingSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-unit-ws-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { thaw::image::remove_tree(dir_); }
  std::string path() const { return dir_ + "/" + thaw::image::kWorkingSetName; }
  std::string raw() const {
    std::ifstream f(path(), std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
  }
  void put(const std::string& bytes) const { std::ofstream(path(), std::ios::binary | std::ios::trunc) << bytes; }
  std::string dir_;
};

}  // namespace

TEST_F(WorkingSetTest, RoundTripsInOrder) {
  std::vector<uint64_t> ws = {5 << 16, 0, 3 << 16, 1023 << 16};
  ASSERT_TRUE(store_working_set(dir_, kId, ws));
  EXPECT_EQ(load_working_set(dir_, kId, kPages), ws);
}

TEST_F(WorkingSetTest, MissingFileIsEmpty) { EXPECT_TRUE(load_working_set(dir_, kId, kPages).empty()); }

TEST_F(WorkingSetTest, AnotherImagesFileIsIgnored) {
  ASSERT_TRUE(store_working_set(dir_, kId, {1 << 16}));
  EXPECT_TRUE(load_working_set(dir_, kId + 1, kPages).empty());
}

TEST_F(WorkingSetTest, DamagedOrTruncatedFileIsIgnored) {
  ASSERT_TRUE(store_working_set(dir_, kId, {1 << 16, 2 << 16}));
  std::string good = raw();
  std::string flipped = good;
  flipped.back() ^= 1;
  put(flipped);
  EXPECT_TRUE(load_working_set(dir_, kId, kPages).empty());
  put(good.substr(0, good.size() - 3));
  EXPECT_TRUE(load_working_set(dir_, kId, kPages).empty());
  put("not a working set at all, just text that is long enough");
  EXPECT_TRUE(load_working_set(dir_, kId, kPages).empty());
  put(good);
  EXPECT_EQ(load_working_set(dir_, kId, kPages).size(), 2u);
}

TEST_F(WorkingSetTest, OffsetsOutsideThePageDataAreRejected) {
  ASSERT_TRUE(store_working_set(dir_, kId, {kPages}));
  EXPECT_TRUE(load_working_set(dir_, kId, kPages).empty());
  ASSERT_TRUE(store_working_set(dir_, kId, {4097}));
  EXPECT_TRUE(load_working_set(dir_, kId, kPages).empty());
}

TEST_F(WorkingSetTest, UnwritableDirectoryIsNoError) {
  EXPECT_FALSE(store_working_set(dir_ + "/missing", kId, {0}));
}
