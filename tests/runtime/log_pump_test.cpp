// A container's output in its app's log file (container/log_pump.h): kept
// bounded and followed into a new file while the container runs on.
#include "container/log_pump.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "common/io.h"
#include "temp_dir.h"

namespace thaw::container {
namespace {

off_t size_of(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

// Writes `text` as the container would and waits until the pump put it in
// the file at `path` (whose size must then be `want`).
void say(LogPump& pump, const std::string& text, const std::string& path, off_t want) {
  ASSERT_EQ(::write(pump.write_end(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (size_of(path) != want && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(size_of(path), want) << path;
}

TEST(LogPump, ARunningContainerRotatesItsAppLogPastTheLimit) {
  runtime::testing::TempDir dir("log-pump");
  std::string log = dir.path() + "/logs/app.log";
  UniqueFd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  LogPump pump(null.get(), log, 1000);
  std::string line(599, 'a');
  line += "\n";
  say(pump, line, log, 600);
  say(pump, line, log, 1200);  // past the limit only after this write
  say(pump, "third\n", log, 6);
  EXPECT_EQ(size_of(log + ".1"), 1200);
  EXPECT_EQ(read_file(log), "third\n");
}

TEST(LogPump, OutputFollowsALogAnotherContainerRotated) {
  runtime::testing::TempDir dir("log-pump");
  std::string log = dir.path() + "/app.log";
  UniqueFd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  LogPump pump(null.get(), log);
  say(pump, "before\n", log, 7);
  ASSERT_EQ(::rename(log.c_str(), (log + ".1").c_str()), 0);
  { UniqueFd other(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640)); }
  say(pump, "after\n", log, 6);
  EXPECT_EQ(read_file(log + ".1"), "before\n");
  EXPECT_EQ(read_file(log), "after\n");
}

}  // namespace
}  // namespace thaw::container
