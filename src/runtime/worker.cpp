#include "runtime/worker.h"

#include <sys/random.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/error.h"
#include "container/channel.h"

namespace thaw::runtime {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Values of one streamed call that may wait for a slow consumer.
constexpr size_t kMaxQueuedValueBytes = size_t{256} << 20;

int to_ms(double s) { return s <= 0 ? 0 : static_cast<int>(std::min(s * 1000, 2e9)); }

Clock::time_point deadline_in(double s) {
  return Clock::now() + std::chrono::milliseconds(to_ms(s));
}

}  // namespace

uint64_t fresh_seed() {
  uint64_t s = 0;
  if (::getrandom(&s, sizeof s, 0) != sizeof s) fail_errno("getrandom");
  return s;
}

Worker::Worker(std::unique_ptr<container::Container> c, std::string label)
    : c_(std::move(c)), label_(std::move(label)) {}

Worker::~Worker() { shutdown(2); }

json Worker::expect(const std::string& type, double timeout_s) {
  auto deadline = deadline_in(timeout_s);
  for (;;) {
    double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    if (left <= 0) fail("the worker sent no '", type, "' within ", timeout_s, " s");
    std::optional<json> m;
    try {
      m = container::recv_message(c_->control_fd(), to_ms(left));
    } catch (const Error& e) {
      // A worker that died with our `start` unread resets the channel: that
      // is an end like EOF, and how the container ended is the news.
      if (std::string(e.what()).find(std::strerror(ECONNRESET)) == std::string::npos)
        fail("waiting for '", type, "' from the worker: ", e.what());
      m.reset();
    }
    if (!m) {
      fail(c_->end_reason(c_->stop(2000)), " before the worker sent '", type, "'; its output is above");
    }
    std::string t = m->value("type", "");
    if (t == type) return *m;
    // The worker (or init) has printed the details, traceback included, to
    // the container's output already.
    if (t == "error" || t == "failed")
      throw WorkerFailed(m->value("error", std::string("unknown error")), m->value("traceback", ""));
    // Anything else (a message of a newer protocol) is not ours to judge.
  }
}

json Worker::start(const json& env, bool restored, uint64_t seed, bool gpu_visible, double timeout_s) {
  container::send_message(c_->control_fd(), {{"type", "start"},
                                             {"restored", restored},
                                             {"env", env},
                                             {"seed", seed},
                                             {"gpu_visible", gpu_visible}});
  json ready = expect("ready", timeout_s);
  reader_ = std::thread([this] { read_loop(); });
  return ready;
}

void Worker::mark_dead(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!dead_) {
    dead_ = true;
    dead_reason_ = why;
  }
  cv_.notify_all();
}

void Worker::read_loop() {
  for (;;) {
    std::optional<json> m;
    try {
      m = container::recv_message(c_->control_fd());
    } catch (const std::exception& e) {
      mark_dead(std::string("the control channel broke: ") + e.what());
      return;
    }
    if (!m) {
      // Only this thread touches the container while it runs.
      mark_dead(c_->end_reason(c_->stop(3000)) + "; its output is above");
      return;
    }
    std::string type = m->value("type", "");
    if (type == "yield") {
      std::lock_guard<std::mutex> lock(mu_);
      uint64_t id = m->value("id", uint64_t{0});
      auto it = pending_.find(id);
      if (it == pending_.end() || !it->second.streams || it->second.cancelled) continue;
      Pending& p = it->second;
      const json& v = (*m)["value"];
      p.queued_bytes += v.is_binary() ? v.get_binary().size() : v.is_string() ? v.get_ref<const std::string&>().size() : 64;
      // One value always waits, however large: the cap is on a backlog.
      if (!p.values.empty() && p.queued_bytes > kMaxQueuedValueBytes) {
        // Memory is not unbounded: a consumer this far behind ends the stream.
        p.overflowed = true;
        cancel_locked(id, p);
      } else {
        p.values.push_back(std::move(*m));
      }
      cv_.notify_all();
      continue;
    }
    if (type != "result") continue;  // bye, or something newer
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(m->value("id", uint64_t{0}));
    if (it != pending_.end()) {
      it->second.result = std::move(*m);
      cv_.notify_all();
    }
  }
}

// mu_ is held. The worker closes the generator after its next value (an
// endless one would otherwise hold its container until the timeout).
void Worker::cancel_locked(uint64_t id, Pending& p) {
  p.cancelled = true;
  p.values.clear();
  p.queued_bytes = 0;
  try {
    std::lock_guard<std::mutex> lock(send_mu_);
    container::send_message(c_->control_fd(), {{"type", "cancel"}, {"id", id}});
  } catch (const std::exception&) {
    // the worker is gone: its call ends anyway
  }
}

json Worker::call(const json& request, double timeout_s, const YieldSink& on_yield, const CancelCheck& cancelled) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (dead_) fail(dead_reason_);
    id = next_id_++;
    pending_[id].streams = static_cast<bool>(on_yield);
  }
  // The request goes on as the client sent it (args, kwargs and whatever
  // else the SDK puts there, such as args_json); only the id is the channel's.
  json msg = request;
  msg["type"] = "call";
  msg["id"] = id;
  try {
    std::lock_guard<std::mutex> lock(send_mu_);
    container::send_message(c_->control_fd(), msg);
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(id);
    throw;
  }
  auto deadline = deadline_in(timeout_s);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto until = deadline;
    if (cancelled) until = std::min(deadline, Clock::now() + std::chrono::milliseconds(100));
    bool woke = cv_.wait_until(lock, until, [&] {
      const Pending& p = pending_[id];
      return p.result.has_value() || !p.values.empty() || dead_;
    });
    Pending& p = pending_[id];
    if (!woke && until < deadline) {
      lock.unlock();
      bool stop = cancelled();
      lock.lock();
      Pending& q = pending_[id];
      if (!stop || q.result || dead_) continue;
      // The worker ends a stream (a generator, a web answer) on `cancel`
      // and answers; other code cannot be stopped in it.
      cancel_locked(id, q);
      bool answered = cv_.wait_for(lock, std::chrono::seconds(2), [&] { return pending_[id].result.has_value() || dead_; });
      if (answered && !dead_) {
        json r = std::move(*pending_[id].result);
        pending_.erase(id);
        return r;  // its own answer (cancelled, or done just before)
      }
      pending_.erase(id);
      throw CallCancelled("cancelled by its caller");
    }
    if (!p.values.empty()) {
      // Values first: they came before the result.
      std::deque<json> values;
      values.swap(p.values);
      p.queued_bytes = 0;
      lock.unlock();
      bool gone = false;
      for (const auto& v : values) {
        try {
          on_yield(v);
        } catch (const std::exception&) {
          gone = true;
          break;
        }
      }
      lock.lock();
      Pending& q = pending_[id];
      if (gone && !q.cancelled) cancel_locked(id, q);
      continue;
    }
    if (p.result) {
      json r = std::move(*p.result);
      bool overflowed = p.overflowed;
      pending_.erase(id);
      // Values were dropped: the call failed, even where the generator had
      // already ended (ok) when the cancel reached it.
      if (overflowed) {
        r["ok"] = false;
        r.erase("value");
        r["error"] = cat("the caller read the generator's values more slowly than they came (more than ",
                         kMaxQueuedValueBytes >> 20, " MiB were waiting), so the generator was cancelled");
        if (!r.contains("traceback")) r["traceback"] = "";
      }
      return r;
    }
    pending_.erase(id);
    if (!woke) throw CallTimedOut(cat("no result within ", timeout_s, " s"));
    fail(dead_reason_);
  }
}

bool Worker::alive() {
  std::lock_guard<std::mutex> lock(mu_);
  return !dead_;
}

void Worker::abort() { ::shutdown(c_->control_fd(), SHUT_RDWR); }

void Worker::shutdown(double grace_s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  try {
    std::lock_guard<std::mutex> lock(send_mu_);
    container::send_message(c_->control_fd(), {{"type", "shutdown"}});
  } catch (const std::exception&) {
    // gone already
  }
  if (reader_.joinable()) {
    // The worker runs @exit, says bye and exits; the reader sees the EOF.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, deadline_in(grace_s), [&] { return dead_; });
    lock.unlock();
    ::shutdown(c_->control_fd(), SHUT_RDWR);  // wakes the reader if it is not done
    reader_.join();
  } else {
    try {
      expect("bye", grace_s);
    } catch (const std::exception&) {
      // not answering: stop() below makes sure
    }
  }
  c_->close_control();
  c_->stop(to_ms(grace_s));
}

}  // namespace thaw::runtime
