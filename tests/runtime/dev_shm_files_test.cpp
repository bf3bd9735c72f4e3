// container/dev_shm_files.h: the files of a container's own /dev/shm, saved
// from a process in a mount namespace with its own tmpfs there and given to
// another such namespace, as a snapshot's are to its restored containers.
#include "container/dev_shm_files.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "temp_dir.h"

namespace thaw::container {
namespace {

using runtime::testing::TempDir;

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A child in a mount namespace of its own with a fresh tmpfs at /dev/shm:
// runs `setup` there (false: it failed), says so, and waits to be killed,
// so that /proc/<pid>/root/dev/shm shows its /dev/shm meanwhile.
class ShmNamespace {
 public:
  explicit ShmNamespace(const std::function<bool()>& setup) {
    int p[2];
    if (::pipe(p) != 0) fail_errno("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(p[0]);
      bool ok = ::unshare(CLONE_NEWNS) == 0 && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
                setup();
      char c = ok ? 'y' : 'n';
      if (::write(p[1], &c, 1) != 1) ::_exit(1);
      ::pause();
      ::_exit(0);
    }
    ::close(p[1]);
    char c = 0;
    ok_ = ::read(p[0], &c, 1) == 1 && c == 'y';
    ::close(p[0]);
  }
  ~ShmNamespace() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }
  std::string shm() const { return "/proc/" + std::to_string(pid_) + "/root/dev/shm"; }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
};

bool mount_tmpfs() { return ::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") == 0; }

// A restored container's /dev/shm: the copy opened before its own tmpfs
// hides the host's, then filled in.
bool fill_restored(const std::string& saved) {
  SavedDevShm copy = open_saved_dev_shm_files(saved);
  if (!mount_tmpfs()) return false;
  fill_dev_shm_files(copy, saved);
  return true;
}

constexpr off_t kSparseSize = 8 << 20, kDataAt = 4 << 20;
constexpr time_t kMtime = 1700000000;

// What a worker leaves in its /dev/shm: its temporary directory with a
// directory of another owner, a sparse file, a symlink, a FIFO and a
// listener's socket; a directory bound from the host.
bool make_container_files(const std::string& host_dir) {
  if (!mount_tmpfs()) return false;
  if (::mkdir("/dev/shm/thaw-tmp", 0700) != 0 || ::chmod("/dev/shm/thaw-tmp", 01777) != 0) return false;
  if (::mkdir("/dev/shm/thaw-tmp/model", 0750) != 0 || ::chown("/dev/shm/thaw-tmp/model", 1234, 4321) != 0)
    return false;
  // A file removed again: its inode number is one the copy skips.
  int scratch = ::open("/dev/shm/thaw-tmp/scratch", O_CREAT | O_WRONLY, 0600);
  if (scratch < 0 || ::close(scratch) != 0 || ::unlink("/dev/shm/thaw-tmp/scratch") != 0) return false;
  int fd = ::open("/dev/shm/thaw-tmp/model/weights", O_CREAT | O_WRONLY, 0640);
  if (fd < 0 || ::ftruncate(fd, kSparseSize) != 0 || ::pwrite(fd, "weights", 7, kDataAt) != 7) return false;
  struct timespec times[2] = {{kMtime, 0}, {kMtime, 123}};
  if (::futimens(fd, times) != 0) return false;
  ::close(fd);
  if (::symlink("model/weights", "/dev/shm/thaw-tmp/latest") != 0) return false;
  if (::mkfifo("/dev/shm/thaw-tmp/fifo", 0600) != 0 || ::chmod("/dev/shm/thaw-tmp/fifo", 0620) != 0) return false;
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, "/dev/shm/thaw-tmp/listener");
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
  if (::mkdir("/dev/shm/host", 0755) != 0) return false;
  return ::mount(host_dir.c_str(), "/dev/shm/host", nullptr, MS_BIND, nullptr) == 0;
}

// The tree under `shm` is the one make_container_files made (no socket).
void expect_container_files(const std::string& shm) {
  struct stat st;
  ASSERT_EQ(::lstat((shm + "/thaw-tmp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  ASSERT_EQ(::lstat((shm + "/thaw-tmp/model").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 4321u);
  std::string weights = shm + "/thaw-tmp/model/weights";
  ASSERT_EQ(::lstat(weights.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, kSparseSize);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "the hole was written out";
  EXPECT_EQ(st.st_mtim.tv_sec, kMtime);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(read(weights).substr(kDataAt - 1, 9), std::string("\0weights\0", 9));
  char target[64] = {};
  ASSERT_GT(::readlink((shm + "/thaw-tmp/latest").c_str(), target, sizeof target - 1), 0);
  EXPECT_STREQ(target, "model/weights");
  ASSERT_EQ(::lstat((shm + "/thaw-tmp/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0620u);
  EXPECT_NE(::lstat((shm + "/thaw-tmp/listener").c_str(), &st), 0) << "a socket is bound again, not copied";
}

TEST(DevShmFiles, SavedFromOneContainerAndGivenToAnother) {
  TempDir tmp("thaw-dev-shm");
  std::string host = tmp.path() + "/host", saved = tmp.path() + "/saved";
  ASSERT_EQ(::mkdir(host.c_str(), 0755), 0);
  std::ofstream(host + "/volume-file") << "the host's";

  SavedFiles got;
  {
    ShmNamespace original([&] { return make_container_files(host); });
    ASSERT_TRUE(original.ok());
    got = save_dev_shm_files(original.pid(), saved);
  }
  EXPECT_EQ(got.files, 3u);  // weights, latest, fifo
  EXPECT_GE(got.bytes, 7u);  // the page of data, not the hole
  EXPECT_LE(got.bytes, 1u << 16);
  ASSERT_EQ(got.left_out.size(), 1u);
  EXPECT_NE(got.left_out[0].find("/dev/shm/thaw-tmp/listener: a socket"), std::string::npos) << got.left_out[0];
  struct stat st;
  EXPECT_NE(::lstat((saved + "/host").c_str(), &st), 0) << "a path bound from the host is not the container's";
  expect_container_files(saved);

  ShmNamespace restored([&] { return fill_restored(saved); });
  ASSERT_TRUE(restored.ok());
  expect_container_files(restored.shm());
}

// The inode number of each of make_container_files's files under `shm`.
std::vector<ino_t> inode_numbers(const std::string& shm) {
  std::vector<ino_t> out;
  for (const char* p : {"/thaw-tmp", "/thaw-tmp/model", "/thaw-tmp/model/weights", "/thaw-tmp/latest",
                        "/thaw-tmp/fifo"}) {
    struct stat st;
    out.push_back(::lstat((shm + p).c_str(), &st) == 0 ? st.st_ino : 0);
  }
  return out;
}

// SQLite refuses to write to a database whose path names another inode
// than the one it opened: a restored container's files have the numbers
// they had, the one skipped by a removed file and the socket's included.
TEST(DevShmFiles, EachFileGetsItsInodeNumberBack) {
  TempDir tmp("thaw-dev-shm");
  std::string host = tmp.path() + "/host", saved = tmp.path() + "/saved";
  ASSERT_EQ(::mkdir(host.c_str(), 0755), 0);
  std::vector<ino_t> numbers;
  {
    ShmNamespace original([&] { return make_container_files(host); });
    ASSERT_TRUE(original.ok());
    save_dev_shm_files(original.pid(), saved);
    numbers = inode_numbers(original.shm());
  }
  ShmNamespace restored([&] { return fill_restored(saved); });
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(inode_numbers(restored.shm()), numbers);
  expect_container_files(restored.shm());
}

// A file of two names (a hard link) is one file again, and takes one
// number: the files made after it keep theirs.
TEST(DevShmFiles, AHardLinkedFileIsOneFileWithItsNumber) {
  TempDir tmp("thaw-dev-shm");
  std::string saved = tmp.path() + "/saved";
  auto files = [](const std::string& shm) {
    std::vector<ino_t> out;
    for (const char* p : {"/thaw-tmp", "/thaw-tmp/a", "/thaw-tmp/b", "/thaw-tmp/later"}) {
      struct stat st;
      out.push_back(::lstat((shm + p).c_str(), &st) == 0 ? st.st_ino : 0);
    }
    return out;
  };
  std::vector<ino_t> numbers;
  {
    ShmNamespace original([] {
      if (!mount_tmpfs() || ::mkdir("/dev/shm/thaw-tmp", 01777) != 0) return false;
      int fd = ::open("/dev/shm/thaw-tmp/a", O_CREAT | O_WRONLY, 0600);
      if (fd < 0 || ::write(fd, "shared", 6) != 6 || ::close(fd) != 0) return false;
      if (::link("/dev/shm/thaw-tmp/a", "/dev/shm/thaw-tmp/b") != 0) return false;
      fd = ::open("/dev/shm/thaw-tmp/later", O_CREAT | O_WRONLY, 0600);
      return fd >= 0 && ::close(fd) == 0;
    });
    ASSERT_TRUE(original.ok());
    save_dev_shm_files(original.pid(), saved);
    numbers = files(original.shm());
  }
  ShmNamespace restored([&] { return fill_restored(saved); });
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(files(restored.shm()), numbers);
  EXPECT_EQ(numbers[1], numbers[2]);
  EXPECT_EQ(read(restored.shm() + "/thaw-tmp/b"), "shared");
}

// An image saved before the numbers were kept has no list: its files come
// back all the same.
TEST(DevShmFiles, ACopyWithoutItsListOfNumbersIsGivenAllTheSame) {
  TempDir tmp("thaw-dev-shm");
  std::string host = tmp.path() + "/host", saved = tmp.path() + "/saved";
  ASSERT_EQ(::mkdir(host.c_str(), 0755), 0);
  {
    ShmNamespace original([&] { return make_container_files(host); });
    ASSERT_TRUE(original.ok());
    save_dev_shm_files(original.pid(), saved);
  }
  ASSERT_EQ(::unlink(saved_inodes_path(saved).c_str()), 0);
  ShmNamespace restored([&] { return fill_restored(saved); });
  ASSERT_TRUE(restored.ok());
  expect_container_files(restored.shm());
}

TEST(DevShmFiles, AColdContainerGetsAnEmptyTemporaryDirectory) {
  ShmNamespace cold([] {
    if (!mount_tmpfs()) return false;
    fill_dev_shm_files(SavedDevShm(), "");
    return true;
  });
  ASSERT_TRUE(cold.ok());
  struct stat st;
  ASSERT_EQ(::lstat((cold.shm() + "/thaw-tmp").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 01777u);
}

// Names of one file (os.link in the snapshot phase, or a tool that
// renames through a link): one file again in the restored container, not
// copies that a write through one name no longer reaches.
TEST(DevShmFiles, HardLinksStayOneFile) {
  TempDir tmp("thaw-dev-shm");
  std::string saved = tmp.path() + "/saved";
  SavedFiles got;
  {
    ShmNamespace original([] {
      if (!mount_tmpfs() || ::mkdir("/dev/shm/a", 0755) != 0 || ::mkdir("/dev/shm/b", 0755) != 0) return false;
      int fd = ::open("/dev/shm/a/data", O_CREAT | O_WRONLY, 0644);
      if (fd < 0 || ::write(fd, "one", 3) != 3) return false;
      ::close(fd);
      return ::link("/dev/shm/a/data", "/dev/shm/a/same") == 0 && ::link("/dev/shm/a/data", "/dev/shm/b/same") == 0;
    });
    ASSERT_TRUE(original.ok());
    got = save_dev_shm_files(original.pid(), saved);
  }
  EXPECT_EQ(got.bytes, 3u) << "its data is counted once";
  ShmNamespace restored([&] { return fill_restored(saved); });
  ASSERT_TRUE(restored.ok());
  for (const std::string& dir : {saved, restored.shm()}) {
    struct stat a, b, c;
    ASSERT_EQ(::stat((dir + "/a/data").c_str(), &a), 0) << dir;
    ASSERT_EQ(::stat((dir + "/a/same").c_str(), &b), 0) << dir;
    ASSERT_EQ(::stat((dir + "/b/same").c_str(), &c), 0) << dir;
    EXPECT_EQ(a.st_ino, b.st_ino) << dir;
    EXPECT_EQ(a.st_ino, c.st_ino) << dir;
    EXPECT_EQ(a.st_nlink, 3u) << dir;
  }
}

// A host without /dev/shm gives its containers none (mounts.cpp): their
// snapshots have none to save, and must still be taken.
TEST(DevShmFiles, AContainerWithoutDevShmSavesNothing) {
  TempDir tmp("thaw-dev-shm");
  std::string saved = tmp.path() + "/saved";
  ShmNamespace original([] { return ::mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755") == 0; });
  ASSERT_TRUE(original.ok());
  struct stat st;
  ASSERT_NE(::stat((original.shm()).c_str(), &st), 0) << "the namespace has no /dev/shm";
  SavedFiles got = save_dev_shm_files(original.pid(), saved);
  EXPECT_EQ(got.files, 0u);
  EXPECT_TRUE(got.left_out.empty());
  ASSERT_EQ(::stat(saved.c_str(), &st), 0) << "an empty copy, which the snapshot takes in as any";
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST(DevShmFiles, SavingIntoAnExistingDirectoryIsRefused) {
  TempDir tmp("thaw-dev-shm");
  ShmNamespace original([] { return mount_tmpfs(); });
  ASSERT_TRUE(original.ok());
  try {
    save_dev_shm_files(original.pid(), tmp.path());
    FAIL() << "saved over " << tmp.path();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(tmp.path()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace thaw::container
