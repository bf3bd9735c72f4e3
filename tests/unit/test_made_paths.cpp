// What a restore made in the filesystem for a unix socket bound to a path
// (sockets.cpp): reported on the status pipe as "M" lines, and removed by a
// failed restore only while each is still the file that was made.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/resources/resources.h"

namespace {

using thaw::engine::MadePath;

std::string bound_socket_file(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  ::close(fd);  // the file stays, as a dead original's does
  return path;
}

TEST(MadePaths, LineRoundTrips) {
  struct stat st{};
  st.st_dev = 0x10302;
  st.st_ino = 77;
  std::string line = thaw::engine::made_path_line(st, "/tmp/pymp-a b/listener-1");
  ASSERT_EQ(line.back(), '\n');
  MadePath p;
  ASSERT_TRUE(thaw::engine::parse_made_path(line.substr(0, line.size() - 1), &p));
  EXPECT_EQ(p.dev, 0x10302u);
  EXPECT_EQ(p.ino, 77u);
  EXPECT_EQ(p.path, "/tmp/pymp-a b/listener-1");
  EXPECT_FALSE(thaw::engine::parse_made_path("M 1 2 zz", &p));
  EXPECT_FALSE(thaw::engine::parse_made_path("R 1 2 3 4", &p));
}

TEST(MadePaths, RemovesWhatWasMadeAndNothingThatReplacedIt) {
  char tmpl[] = "/tmp/thaw-unit-made-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string top = tmpl, dir = top + "/d";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  std::string sock = bound_socket_file(dir + "/s"), other = bound_socket_file(top + "/o");
  auto made = [](const std::string& path) {
    struct stat st;
    EXPECT_EQ(::lstat(path.c_str(), &st), 0);
    MadePath p;
    thaw::engine::parse_made_path(thaw::engine::made_path_line(st, path), &p);
    return p;
  };
  MadePath o = made(other);
  // `other` was replaced since it was made: another file of the name stays.
  // (Renamed over it: made while the first still holds its inode number.)
  ASSERT_EQ(::rename(bound_socket_file(top + "/o2").c_str(), other.c_str()), 0);
  thaw::engine::remove_made_paths(::getpid(), {made(dir), made(sock), o});
  struct stat st;
  EXPECT_NE(::lstat(sock.c_str(), &st), 0);
  EXPECT_NE(::lstat(dir.c_str(), &st), 0);
  EXPECT_EQ(::lstat(other.c_str(), &st), 0);
  ::unlink(other.c_str());
  ::rmdir(top.c_str());
}

}  // namespace
