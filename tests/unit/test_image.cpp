// The image directory is published atomically and verified on reading.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>
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

// The image's own message, not "read .../manifest.json: No such file or
// directory" as before.
TEST_F(ImageTest, MissingPartOfAnImageIsNamed) {
  for (const char* part : {"manifest.json", "memory.bin"}) {
    thaw::image::remove_tree(dir_);
    {
      thaw::image::Writer w(dir_);
      auto m = sample();
      w.commit(m);
    }
    ASSERT_EQ(::unlink((dir_ + "/" + part).c_str()), 0);
    try {
      thaw::image::Reader r(dir_);
      FAIL() << part << " missing was accepted";
    } catch (const thaw::Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(std::string("cannot read ") + part + " (incomplete or damaged image"), std::string::npos)
          << msg;
    }
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

TEST_F(ImageTest, MappingsRoundTripThroughTheMemoryTable) {
  std::string data(200 << 10, 'd');  // four hash blocks, the last one short
  auto m = sample();
  {
    thaw::image::Writer w(dir_);
    thaw::image::Vma heap;
    heap.start = 0x10000;
    heap.end = 0x10000 + (256 << 10);
    heap.prot = 3;
    heap.kind = "anon";
    heap.name = "[heap]";
    heap.madv = thaw::image::kLocked;
    heap.runs.push_back(w.append(heap.start, data.data(), data.size()));
    thaw::image::Vma lib;
    lib.start = 0x7f0000000000;
    lib.end = 0x7f0000004000;
    lib.prot = 5;
    lib.shared = true;
    lib.growsdown = true;
    lib.pgoff = 0x3000;
    lib.kind = "file";
    lib.file = 0;
    lib.name = "/usr/lib/x.so";
    m.vmas = {heap, lib};
    w.commit(m);
  }
  thaw::image::Reader r(dir_);
  const auto& v = r.manifest().vmas;
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].name, "[heap]");
  EXPECT_EQ(v[0].madv, thaw::image::kLocked);
  ASSERT_EQ(v[0].runs.size(), 1u);
  EXPECT_EQ(v[0].runs[0].hashes.size(), 4u);
  EXPECT_EQ(r.read_run(v[0].runs[0]), data);
  EXPECT_EQ(v[1].kind, "file");
  EXPECT_EQ(v[1].name, "/usr/lib/x.so");
  EXPECT_TRUE(v[1].shared && v[1].growsdown);
  EXPECT_EQ(v[1].pgoff, 0x3000u);
  EXPECT_EQ(v[1].file, 0);
  EXPECT_TRUE(v[1].runs.empty());
}

TEST_F(ImageTest, CorruptMemoryTableIsReported) {
  {
    thaw::image::Writer w(dir_);
    auto m = sample();
    thaw::image::Vma v;
    v.start = 0x1000;
    v.end = 0x2000;
    v.kind = "anon";
    m.vmas = {v};
    w.commit(m);
  }
  {
    std::fstream f(dir_ + "/memory.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  try {
    thaw::image::Reader r(dir_);
    FAIL() << "corrupt memory table was accepted";
  } catch (const thaw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("memory.bin"), std::string::npos) << e.what();
  }
}

TEST_F(ImageTest, EveryHashBlockOfARunIsChecked) {
  std::string data(3 * thaw::image::kHashBlock, 'e');
  thaw::image::PageRun run;
  {
    thaw::image::Writer w(dir_);
    run = w.append(0x4000, data.data(), data.size());
    auto m = sample();
    w.commit(m);
  }
  EXPECT_TRUE(thaw::image::run_intact(run, data.data()));
  data[2 * thaw::image::kHashBlock + 7] = 'x';  // only the last block changes
  EXPECT_FALSE(thaw::image::run_intact(run, data.data()));
}

// Staged runs, runs that did not fit the staging memory and runs from other
// memory all end up where their PageRun says, whatever order they came in.
TEST_F(ImageTest, StagedAndDirectRunsAllLandInPlace) {
  std::vector<thaw::image::PageRun> runs;
  std::vector<std::string> want;
  {
    thaw::image::Writer w(dir_);
    w.stage_in_memory(2u << 20);  // room for exactly 2 MiB
    auto put = [&](char fill, uint64_t len, bool staged) {
      std::string bytes(len, fill);
      void* room = staged ? w.stage_space(len) : nullptr;
      if (staged) {
        ASSERT_NE(room, nullptr);
        std::memcpy(room, bytes.data(), len);
      }
      runs.push_back(w.append(0x100000 * runs.size(), room ? room : bytes.data(), len));
      want.push_back(bytes);
    };
    put('a', 1u << 20, true);
    put('b', 5000, false);  // not a page multiple: padded in pages.img
    put('c', 512u << 10, true);
    EXPECT_EQ(w.stage_space(1u << 20), nullptr) << "only 512 KiB of room was left";
    put('d', 256u << 10, true);
    put('e', 8192, false);
    auto m = sample();
    w.commit(m);
  }
  thaw::image::Reader r(dir_);
  for (size_t i = 0; i < runs.size(); i++) EXPECT_EQ(r.read_run(runs[i]), want[i]) << "run " << i;
}

TEST_F(ImageTest, StagingThatCannotBeHadWritesDirectly) {
  thaw::image::Writer w(dir_);
  EXPECT_EQ(w.stage_space(4096), nullptr) << "no staging was asked for";
  w.stage_in_memory(1u << 20);  // under one huge page: none
  EXPECT_EQ(w.stage_space(4096), nullptr);
}
