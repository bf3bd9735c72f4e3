// Threads started for requests, joined when they finish (reap) or all at
// once (join_all), so that a long-lived server does not accumulate them.
#pragma once
#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

namespace thaw::runtime {

class ThreadSet {
 public:
  ~ThreadSet() { join_all(); }

  void start(std::function<void()> fn) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard<std::mutex> lock(mu_);
    reap_locked();
    items_.push_back({std::thread([fn = std::move(fn), done] {
                        fn();
                        *done = true;
                      }),
                      done});
  }

  void join_all() {
    std::list<Item> items;
    {
      std::lock_guard<std::mutex> lock(mu_);
      items.swap(items_);
    }
    for (auto& i : items) i.thread.join();
  }

 private:
  struct Item {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void reap_locked() {
    for (auto it = items_.begin(); it != items_.end();) {
      if (*it->done) {
        it->thread.join();
        it = items_.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::mutex mu_;
  std::list<Item> items_;
};

}  // namespace thaw::runtime
