#include "container/live.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

namespace thaw::container {

void LiveContainers::note(const void* key, LiveContainer c) {
  std::lock_guard<std::mutex> lock(mu_);
  live_[key] = std::move(c);
}

void LiveContainers::gone(const void* key) {
  std::lock_guard<std::mutex> lock(mu_);
  live_.erase(key);
}

void LiveContainers::kill_all(int timeout_ms) {
  std::vector<std::string> dirs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, c] : live_) {
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
