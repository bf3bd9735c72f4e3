#include "container/live.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

namespace thaw::container {

namespace {

std::mutex mu;
std::map<const void*, LiveContainer>& live() {
  static auto* m = new std::map<const void*, LiveContainer>;  // never destroyed: used up to _exit
  return *m;
}

}  // namespace

void note_live(const void* key, LiveContainer c) {
  std::lock_guard<std::mutex> lock(mu);
  live()[key] = std::move(c);
}

void note_gone(const void* key) {
  std::lock_guard<std::mutex> lock(mu);
  live().erase(key);
}

void kill_all_live(int timeout_ms) {
  std::vector<std::string> dirs;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [key, c] : live()) {
      if (c.ns_init > 0) ::kill(c.ns_init, SIGKILL);
      if (c.root > 0) {
        ::kill(-c.root, SIGKILL);
        ::kill(c.root, SIGKILL);
      }
      dirs.insert(dirs.end(), c.cgroups.begin(), c.cgroups.end());
    }
  }
  // A group is busy until its last process has exited (not reaped: zombies
  // do not count), which SIGKILL makes a matter of milliseconds.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!dirs.empty()) {
    std::vector<std::string> busy;
    for (const auto& d : dirs)
      if (::rmdir(d.c_str()) != 0 && errno == EBUSY) busy.push_back(d);
    dirs.swap(busy);
    if (dirs.empty() || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace thaw::container
