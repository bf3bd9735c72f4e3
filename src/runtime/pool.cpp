#include "runtime/pool.h"

#include <algorithm>
#include <thread>

#include "common/error.h"

namespace thaw::runtime {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

json error_result(const std::string& error, const std::string& traceback = "") {
  return {{"type", "result"}, {"ok", false}, {"error", error}, {"traceback", traceback}};
}

}  // namespace

int Pool::capacity() const { return target_.fn.inputs_at_once(); }

bool Pool::takes_input(const Slot& s) const {
  int max = target_.fn.max_inputs();
  return !s.broken && !s.used_up && s.in_flight < capacity() && (max <= 0 || s.served < max);
}

Pool::SlotIt Pool::acquire(bool use_snapshot, const CancelCheck& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  // Every way out of here (a slot, a started container, a throw) holds the
  // lock again, so the count drops under it.
  queued_++;
  struct Dequeue {
    int& n;
    ~Dequeue() { n--; }
  } dequeue{queued_};
  Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(target_.fn.startup_timeout_s() + target_.fn.timeout_s()));
  for (;;) {
    for (auto it = slots_.begin(); it != slots_.end(); ++it)
      if (takes_input(*it)) {
        it->in_flight++;
        it->served++;
        keep_buffer_locked();  // it may have been the spare one
        return it;
      }
    // A container starting for a call takes capacity() inputs (@concurrent):
    // a call that fits in one of those waits for it rather than starting
    // another (as a burst of .map() inputs would, one container each).
    int starting_for_calls = starting_ - buffer_starting_;
    int spare = starting_for_calls * (capacity() - 1) - waiting_for_start_;
    int max = limits_.max_containers;
    if (spare <= 0 && (max <= 0 || static_cast<int>(slots_.size()) + starting_ < max)) break;
    if (spare > 0) waiting_for_start_++;
    // In slices while a cancel may come: a queued call cancelled leaves now.
    auto until = cancelled ? std::min(deadline, Clock::now() + std::chrono::milliseconds(100)) : deadline;
    cv_.wait_until(lock, until);
    if (spare > 0) waiting_for_start_--;
    if (cancelled) {
      lock.unlock();
      bool stop = cancelled();
      lock.lock();
      if (stop) throw CallCancelled("cancelled while it waited for a container");
    }
    if (Clock::now() >= deadline)
      fail("no container of ", target_.label(), " became free (max_containers=", max, ")");
  }
  return start_slot(lock, use_snapshot, 1);
}

int Pool::buffered_target_locked() const {
  int buffer = limits_.buffer_containers;
  if (!autoscale_ || stopping_ || buffer <= 0) return 0;
  int busy = starting_ - buffer_starting_;
  for (const auto& s : slots_)
    if (s.in_flight > 0) busy++;
  if (busy == 0) return 0;
  int want = busy + buffer;
  int max = limits_.max_containers;
  return max > 0 ? std::min(want, max) : want;
}

void Pool::keep_buffer_locked() {
  int have = static_cast<int>(slots_.size()) + starting_;
  for (int want = buffered_target_locked(); have < want; have++) {
    starting_++;
    buffer_starting_++;
    buffer_starters_.start([this] { start_buffer_container(true); });
  }
}

void Pool::keep_min_locked() {
  if (!warmed_ || stopping_) return;
  int have = starting_;
  for (const auto& s : slots_)
    if (!s.broken && !s.used_up) have++;
  for (; have < min_kept_locked(); have++) {
    starting_++;
    buffer_starting_++;
    buffer_starters_.start([this] { start_buffer_container(false); });
  }
}

void Pool::start_buffer_container(bool buffer) {
  std::unique_ptr<Worker> w;
  std::string error;
  try {
    w = snapshots_.start_worker(target_, true);
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::unique_lock<std::mutex> lock(mu_);
  starting_--;
  buffer_starting_--;
  cv_.notify_all();
  if (!w) {
    lock.unlock();
    snapshots_.log().line(cat("Could not start a ", buffer ? "buffer" : "warm", " container of ", target_.label(),
                              ": ", error));
    return;
  }
  if (stopping_) {
    lock.unlock();
    w->shutdown(10);
    return;
  }
  std::string id = w->container().id();
  slots_.push_back(Slot{std::move(w), 0});
  ScaleLimits limits = limits_;
  lock.unlock();
  if (buffer)
    snapshots_.log().line(cat("Buffer container ", id, " of ", target_.label(), " is ready (buffer_containers=",
                              limits.buffer_containers, ")."));
  else
    snapshots_.log().line(cat("Container ", id, " of ", target_.label(), " is ready (min_containers=",
                              limits.min_containers, ")."));
}

// Starts a container (the lock is released meanwhile) and adds it with
// in_flight calls already counted.
Pool::SlotIt Pool::start_slot(std::unique_lock<std::mutex>& lock, bool use_snapshot, int in_flight) {
  starting_++;
  if (in_flight > 0) keep_buffer_locked();  // spares for the calls after this one
  lock.unlock();
  std::unique_ptr<Worker> w;
  try {
    w = snapshots_.start_worker(target_, use_snapshot);
  } catch (...) {
    lock.lock();
    starting_--;
    cv_.notify_all();
    throw;
  }
  lock.lock();
  starting_--;
  slots_.push_front(Slot{std::move(w), in_flight, in_flight});
  // Another waiter may fit in the new container (@concurrent).
  cv_.notify_all();
  return slots_.begin();
}

void Pool::release(SlotIt it, bool healthy, bool stop_fetching) {
  std::unique_ptr<Worker> gone;
  bool used_up = false;
  std::string why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    it->in_flight--;
    if (!healthy || !it->worker->alive()) it->broken = true;
    // A container that has served its max_inputs is done (single_use_containers),
    // as is one whose code called thaw.experimental.stop_fetching_inputs().
    int max = target_.fn.max_inputs();
    if (max > 0 && it->served >= max) it->used_up = true;
    if (stop_fetching) it->used_up = it->stop_fetching = true;
    why = it->stop_fetching ? "its code called stop_fetching_inputs()"
                            : cat("it has served its max_inputs=", max);
    if (it->in_flight == 0) {
      it->idle_since = Clock::now();
      if (it->broken || it->used_up) {
        used_up = !it->broken;
        gone = std::move(it->worker);
        slots_.erase(it);
      }
    }
  }
  cv_.notify_all();
  if (!gone) return;
  if (used_up) {
    // A healthy container runs its @exit hooks, in the background: the
    // call's result does not wait for them.
    std::shared_ptr<Worker> w(std::move(gone));
    stoppers_.start([this, w, why] {
      snapshots_.log().line(cat("Stopping container ", w->container().id(), " of ", target_.label(), ": ", why, "."));
      w->shutdown(10);
    });
    return;
  }
  // A broken container is stopped outside the lock, in the background: that
  // may take a while, and the caller's answer (or another call's) must not
  // wait for it.
  std::shared_ptr<Worker> w(std::move(gone));
  stoppers_.start([w] { w->shutdown(1); });
}

json Pool::call(const json& request, bool use_snapshot, const YieldSink& on_yield, const CancelCheck& cancelled) {
  // retries= is the runtime's to honour (as in Modal, where it runs on the
  // server): every caller gets it, `thaw call` and Function.from_name too.
  auto retries = target_.fn.retries();
  // A handle's own snapshot is kept while it is called (least recently
  // used ones are removed when more are made).
  if (target_.own_snapshot) {
    // At most every few seconds: a timestamp write per call would cost
    // stores on slow filesystems; the order of use is what counts.
    int64_t now = Clock::now().time_since_epoch() / std::chrono::milliseconds(1);
    if (now - used_noted_ms_.load() >= 5000 && snapshots_.note_used(target_)) used_noted_ms_ = now;
  }
  bool streamed = false;
  YieldSink counted;
  if (on_yield) {
    counted = [&](const json& m) {
      streamed = true;
      on_yield(m);
    };
  }
  for (int retry = 1;; retry++) {
    json r = call_once(request, use_snapshot, counted, cancelled);
    if (r.value("ok", false) || r.value("cancelled", false) || retry > retries.max_retries) return r;
    if (streamed) {
      snapshots_.log().line(cat(target_.label(), " failed after streaming values; not retried (its caller has them)."));
      return r;
    }
    double delay = retries.delay_before(retry);
    std::string why = r.value("error", std::string("failed"));
    snapshots_.log().line(cat(target_.label(), " failed (", why.substr(0, why.find('\n')), "); retry ", retry, " of ",
                              retries.max_retries, " in ", delay, " s."));
    // The next call_once answers a cancel that comes meanwhile.
    auto wake = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(delay));
    while (Clock::now() < wake && !(cancelled && cancelled()))
      std::this_thread::sleep_until(std::min(wake, Clock::now() + std::chrono::milliseconds(100)));
  }
}

json Pool::call_once(const json& request, bool use_snapshot, const YieldSink& on_yield, const CancelCheck& cancelled) {
  auto cancelled_result = [&] {
    json r = error_result(cat("cancelled: ", target_.label(), " was cancelled by its caller (FunctionCall.cancel())"));
    r["cancelled"] = true;
    return r;
  };
  if (cancelled && cancelled()) return cancelled_result();
  SlotIt it;
  try {
    it = acquire(use_snapshot, cancelled);
  } catch (const CallCancelled&) {
    return cancelled_result();
  } catch (const WorkerFailed& e) {
    // A start stopped by the runtime's interruption is a cancel, not a failure.
    if (cancelled && cancelled()) return cancelled_result();
    return error_result(cat("the container of ", target_.label(), " failed to start: ", e.what()), e.traceback());
  } catch (const std::exception& e) {
    if (cancelled && cancelled()) return cancelled_result();
    return error_result(cat("could not start a container for ", target_.label(), ": ", e.what()));
  }
  double timeout = target_.fn.timeout_s();
  if (cancelled && cancelled()) {  // while it waited for a container
    release(it, true);
    return cancelled_result();
  }
  try {
    // The worker's alarm ends a call at its timeout, but only between Python
    // bytecodes: one stuck in native code (a long C call, a deadlock) is
    // ended here, a moment later, by stopping its container.
    json r = it->worker->call(request, timeout * 1.05 + 2, on_yield, cancelled);
    // The worker says so when it leaves after this answer (a @web_server
    // whose server broke, a batch past its timeout): it gets no more inputs.
    bool leaving = r.value("leaving", false);
    bool stop_fetching = r.value("stop_fetching", false);
    r.erase("leaving");
    r.erase("stop_fetching");
    release(it, !leaving, stop_fetching);
    return r;
  } catch (const CallCancelled&) {
    // Its code may still run: the container takes no more inputs and is
    // stopped once the others it runs are done.
    release(it, false);
    return cancelled_result();
  } catch (const CallTimedOut&) {
    release(it, false);
    return error_result(cat("FunctionTimeoutError: ", target_.label(), " exceeded its timeout of ", timeout,
                            " s and did not stop (it was in native code, where the timeout cannot interrupt "
                            "it); its container was stopped"));
  } catch (const std::exception& e) {
    release(it, false);
    // Its container stopped by the runtime's interruption as it came up.
    if (cancelled && cancelled()) return cancelled_result();
    return error_result(cat(target_.label(), ": the call did not complete: ", e.what()));
  }
}

void Pool::warm() {
  std::unique_lock<std::mutex> lock(mu_);
  warmed_ = true;
  while (static_cast<int>(slots_.size()) + starting_ < min_kept_locked()) {
    try {
      start_slot(lock, true, 0);
    } catch (const std::exception&) {
      return;  // logged by the launch; calls will try again
    }
  }
}

bool Pool::warmed() {
  std::lock_guard<std::mutex> lock(mu_);
  return warmed_;
}

void Pool::scale_down() {
  stop_idle_for(std::chrono::duration<double>(limits().scaledown_window_s), true);
  std::lock_guard<std::mutex> lock(mu_);
  keep_buffer_locked();  // one that failed to start or died is replaced
  keep_min_locked();
}

int Pool::min_kept_locked() const {
  int max = limits_.max_containers;
  return max > 0 ? std::min(limits_.min_containers, max) : limits_.min_containers;
}

ScaleLimits Pool::limits() {
  std::lock_guard<std::mutex> lock(mu_);
  return limits_;
}

void Pool::set_limits(const ScaleLimits& limits, bool keep_warm) {
  std::lock_guard<std::mutex> lock(mu_);
  if (limits == limits_) return;
  limits_ = limits;
  // Room under a raised max_containers: calls waiting for a container look again.
  cv_.notify_all();
  // Under `thaw serve`, a pool asked for warm containers keeps them, as
  // one deployed with min_containers does.
  if (keep_warm && autoscale_ && limits_.min_containers > 0) warmed_ = true;
  keep_min_locked();
  keep_buffer_locked();
}

void Pool::stop_idle() { stop_idle_for(std::chrono::duration<double>(0), false); }

void Pool::stop_idle_for(std::chrono::duration<double> window, bool keep_warm) {
  std::vector<std::unique_ptr<Worker>> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    int keep = keep_warm ? std::max(min_kept_locked(), buffered_target_locked()) : 0;
    int count = static_cast<int>(slots_.size());
    for (auto it = slots_.begin(); it != slots_.end() && count > keep;) {
      if (it->in_flight == 0 && Clock::now() - it->idle_since >= window) {
        gone.push_back(std::move(it->worker));
        it = slots_.erase(it);
        count--;
      } else {
        ++it;
      }
    }
  }
  for (auto& w : gone) {
    snapshots_.log().line(cat("Stopping idle container ", w->container().id(), " of ", target_.label(), "."));
    w->shutdown(10);
  }
}

void Pool::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  // A buffer container still starting is stopped by its starter.
  buffer_starters_.join_all();
  stoppers_.join_all();
  std::list<Slot> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(slots_);
  }
  // Containers stop in parallel: each may take its grace period for @exit.
  std::vector<std::thread> stoppers;
  for (auto& s : all)
    if (s.worker) stoppers.emplace_back([w = s.worker.get()] { w->shutdown(10); });
  for (auto& t : stoppers) t.join();
}

size_t Pool::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.size() + starting_;
}

PoolStats Pool::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return {queued_, static_cast<int>(slots_.size()) + starting_};
}

}  // namespace thaw::runtime
