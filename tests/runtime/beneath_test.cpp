// container/beneath.h: file operations inside a directory another process
// changes meanwhile, as a container changes a Volume.
#include "container/beneath.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"
#include "temp_dir.h"

namespace thaw::container {
namespace {

using runtime::testing::TempDir;

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}
bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

struct Volume {
  TempDir tmp{"thaw-beneath"};
  std::string vol = tmp.path() + "/vol", outside = tmp.path() + "/outside";
  UniqueFd fd;
  Volume() {
    ::mkdir(vol.c_str(), 0755);
    ::mkdir(outside.c_str(), 0755);
    write(outside + "/secret", "host file");
    fd.reset(::open(vol.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Beneath, CopiesTreesInAndOut) {
  Volume v;
  std::string local = v.tmp.path() + "/local";
  ::mkdir(local.c_str(), 0755);
  ::mkdir((local + "/sub").c_str(), 0755);
  write(local + "/a.txt", "A");
  write(local + "/sub/b.txt", "B");
  UniqueFd dir = make_dirs_beneath(v.fd.get(), "x/y", "x/y");
  copy_into(local, dir.get(), "local", false, "/x/y/local");
  EXPECT_EQ(read(v.vol + "/x/y/local/sub/b.txt"), "B");
  EXPECT_NE(error_of([&] { copy_into(local + "/a.txt", dir.get(), "local/a.txt", false, "/x/y/local/a.txt"); }),
            "");  // a name, not a path: refused by the kernel as a missing parent
  EXPECT_NE(error_of([&] { copy_into(local, dir.get(), "local", false, "/x/y/local"); }).find("add --force"),
            std::string::npos);
  copy_into(local, dir.get(), "local", true, "/x/y/local");
  std::string back = v.tmp.path() + "/back";
  copy_out_of(dir.get(), "local", back, false, "/x/y/local");
  EXPECT_EQ(read(back + "/a.txt"), "A");
  EXPECT_EQ(read(back + "/sub/b.txt"), "B");
  auto entries = list_beneath(dir.get());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].name, "local");
  EXPECT_EQ(entries[0].type, 'd');
  remove_beneath(v.fd.get(), "x");
  EXPECT_FALSE(exists(v.vol + "/x"));
}

TEST(Beneath, LinksAreNeverFollowed) {
  Volume v;
  ASSERT_EQ(::symlink(v.outside.c_str(), (v.vol + "/out").c_str()), 0);
  EXPECT_NE(error_of([&] { open_beneath(v.fd.get(), "out/secret", O_RDONLY, "/out/secret"); }).find("symbolic link"),
            std::string::npos);
  EXPECT_NE(error_of([&] { make_dirs_beneath(v.fd.get(), "out/new", "/out/new"); }), "");
  EXPECT_FALSE(exists(v.outside + "/new"));
  std::string local = v.tmp.path() + "/f";
  write(local, "mine");
  EXPECT_NE(error_of([&] { copy_into(local, v.fd.get(), "out", true, "/out"); }), "");
  EXPECT_EQ(read(v.outside + "/secret"), "host file");
  remove_beneath(v.fd.get(), "out");  // the link goes, not what it points to
  EXPECT_FALSE(exists(v.vol + "/out"));
  EXPECT_TRUE(exists(v.outside + "/secret"));
}

// A "container" swaps a directory of the volume for a link to the host's
// files and back, as fast as it can, while the volume is copied out and
// removed: nothing outside is read, written or removed.
TEST(Beneath, ADirectorySwappedForALinkMidWayLeadsNowhere) {
  Volume v;
  std::atomic<bool> stop{false};
  std::string d = v.vol + "/d", aside = v.vol + "/d.real", link = v.vol + "/d.link";
  ::mkdir(d.c_str(), 0755);
  for (int i = 0; i < 50; i++) write(d + "/f" + std::to_string(i), "volume data");
  ASSERT_EQ(::symlink(v.outside.c_str(), link.c_str()), 0);
  std::thread swapper([&] {
    while (!stop) {
      ::rename(d.c_str(), aside.c_str());
      ::rename(link.c_str(), d.c_str());  // d is now the link
      ::rename(d.c_str(), link.c_str());
      ::rename(aside.c_str(), d.c_str());
    }
  });
  for (int round = 0; round < 200; round++) {
    std::string back = v.tmp.path() + "/back" + std::to_string(round);
    try {
      copy_out_of(v.fd.get(), "d", back, false, "/d");
    } catch (const Error&) {
      // stopped by the link: what counts is that nothing of outside came along
    }
    EXPECT_FALSE(exists(back + "/secret")) << "round " << round;
    std::string local = v.tmp.path() + "/up";
    write(local, "planted");
    try {
      UniqueFd dir = open_beneath(v.fd.get(), "d", O_PATH | O_DIRECTORY, "/d");
      copy_into(local, dir.get(), "planted", true, "/d/planted");
    } catch (const Error&) {
    }
    ASSERT_FALSE(exists(v.outside + "/planted")) << "round " << round;
  }
  try {
    remove_beneath(v.fd.get(), "d");
  } catch (const Error&) {
  }
  stop = true;
  swapper.join();
  EXPECT_EQ(read(v.outside + "/secret"), "host file");
}

}  // namespace
}  // namespace thaw::container
