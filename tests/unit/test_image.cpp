// The image directory is published atomically and verified on reading.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "common/error.h"
#include "image/image.h"

namespace {

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    dir_ = base_ + "/img";
  }
  void TearDown() override { thaw::image::remove_tree(base_); }
  bool exists(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
  }
  std::string base_, dir_;
};

thaw::image::Manifest sample() {
  thaw::image::Manifest m;
  m.process.pid = 1234;
  m.process.comm = "sample";
  return m;
}

}  // namespace

TEST_F(ImageTest, UncommittedWriterLeavesNothing) {
  {
    thaw::image::Writer w(dir_);
    std::string page(4096, 'a');
    w.append(0x1000, page.data(), page.size());
  }
  EXPECT_FALSE(exists(dir_));
  EXPECT_FALSE(exists(dir_ + ".tmp." + std::to_string(::getpid())));
}

TEST_F(ImageTest, CommitPublishesAndReaderVerifies) {
  std::string page(8192, 'b');
  thaw::image::PageRun run;
  {
    thaw::image::Writer w(dir_);
    run = w.append(0x2000, page.data(), page.size());
    auto m = sample();
    w.commit(m);
  }
  thaw::image::Reader r(dir_);
  EXPECT_EQ(r.manifest().process.comm, "sample");
  EXPECT_EQ(r.read_run(run), page);
}

TEST_F(ImageTest, RefusesToOverwriteAnExistingImage) {
  ASSERT_EQ(::mkdir(dir_.c_str(), 0700), 0);
  EXPECT_THROW(thaw::image::Writer w(dir_), thaw::Error);
}

TEST_F(ImageTest, CorruptManifestIsReported) {
  {
    thaw::image::Writer w(dir_);
    auto m = sample();
    w.commit(m);
  }
  {
    std::fstream f(dir_ + "/manifest.json", std::ios::in | std::ios::out);
    f.seekp(5);
    f.put('#');
  }
  try {
    thaw::image::Reader r(dir_);
    FAIL() << "corrupt manifest was accepted";
  } catch (const thaw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  }
}

TEST_F(ImageTest, CorruptPageDataIsReported) {
  std::string page(4096, 'c');
  thaw::image::PageRun run;
  {
    thaw::image::Writer w(dir_);
    run = w.append(0x3000, page.data(), page.size());
    auto m = sample();
    w.commit(m);
  }
  {
    int fd = ::open((dir_ + "/pages.img").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "X", 1, 100), 1);
    ::close(fd);
  }
  thaw::image::Reader r(dir_);
  EXPECT_THROW(r.read_run(run), thaw::Error);
}
