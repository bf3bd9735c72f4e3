#include "runtime/scheduler.h"

#include <chrono>
#include <limits>

#include "common/error.h"
#include "runtime/log.h"

namespace thaw::runtime {

using nlohmann::json;

Scheduler::Scheduler(Runtime& rt) : rt_(rt) {
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  stop();
  runs_.join_all();
}

void Scheduler::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    try {
      tick(std::time(nullptr));
    } catch (const std::exception& e) {
      rt_.context().log.line(cat("Scheduler: ", e.what()));
    }
    lock.lock();
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
  }
}

void Scheduler::tick(std::time_t now) {
  Context& ctx = rt_.context();
  if (!lock_) {
    lock_ = FileLock::try_lock(ctx.store.home() + "/schedules.lock");
    if (!lock_) {
      if (!told_waiting_)
        ctx.log.line("Another `thaw serve` of this store runs the schedules; this one takes over if it stops.");
      told_waiting_ = true;
      return;
    }
    if (told_waiting_) ctx.log.line("This `thaw serve` runs the schedules now.");
  }
  // What is deployed now (read outside the lock: it is file I/O).
  std::map<std::string, Entry> deployed;
  for (const auto& app : ctx.store.apps()) {
    Deployed d;
    try {
      d = load_deployed(ctx.store, app);
    } catch (const std::exception&) {
      continue;  // stopped, or being deployed
    }
    for (const auto& f : d.desc.functions) {
      if (f.kind != "function") continue;
      std::string id = cat(app, "@v", d.version, "/", f.name);
      try {
        if (auto s = Schedule::from_config(f.config)) deployed.emplace(id, Entry{app, f.name, *s});
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!refused_.count(id)) ctx.log.line(cat("Not scheduling ", app, ".", f.name, ": ", e.what()));
        refused_[id] = e.what();
      }
    }
  }
  std::vector<std::string> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    for (auto it = entries_.begin(); it != entries_.end();)
      it = deployed.count(it->first) || it->second.running ? std::next(it) : entries_.erase(it);
    for (auto& [id, e] : deployed) {
      if (entries_.count(id) || refused_.count(id)) continue;
      try {
        e.next = e.schedule.next_after(now);  // throws for a Cron no date matches
      } catch (const std::exception& ex) {
        ctx.log.line(cat("Not scheduling ", e.app, ".", e.function, ": ", ex.what()));
        refused_[id] = ex.what();
        continue;
      }
      entries_.emplace(id, e);
      ctx.log.line(cat("Scheduled ", e.app, ".", e.function, ": ", e.schedule.describe(), "; first run at ",
                       e.schedule.time_text(e.next), "."));
    }
    for (auto& [id, e] : entries_) {
      if (!deployed.count(id) || now < e.next) continue;
      std::time_t at = e.next;
      try {
        e.next = e.schedule.next_after(std::max(now, at));
      } catch (const std::exception& ex) {
        e.next = std::numeric_limits<std::time_t>::max();  // no later date matches: this run is the last
        ctx.log.line(cat("Scheduled ", e.app, ".", e.function, ": ", ex.what()));
      }
      if (e.running) {
        ctx.log.line(cat("Skipping the scheduled run of ", e.app, ".", e.function, " due at ", e.schedule.time_text(at),
                         ": the previous run has not finished."));
        continue;
      }
      e.running = true;
      due.push_back(id);
    }
  }
  for (const auto& id : due) runs_.start([this, id] { run(id); });
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::run(const std::string& id) {
  std::string app, function;
  uint64_t n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    app = entries_.at(id).app;
    function = entries_.at(id).function;
    n = ++runs_started_;
  }
  Log& log = rt_.context().log;
  log.line(cat("Scheduled run of ", app, ".", function, "."));
  // JSON arguments (none): the worker converts, as for `thaw call`.
  json msg = {{"type", "call"},       {"id", cat("schedule-", n)},     {"app", app},
              {"function", function}, {"method", nullptr},              {"args", nullptr},
              {"kwargs", nullptr},    {"args_json", json::array()},     {"kwargs_json", json::object()},
              {"mode", "deployed"},   {"result_format", "json"}};
  auto t0 = std::chrono::steady_clock::now();
  json r = rt_.call(msg);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (r.value("ok", false))
    log.line(cat("Scheduled run of ", app, ".", function, " finished in ", format_duration(s), "."));
  else
    log.line(cat("Scheduled run of ", app, ".", function, " failed: ", r.value("error", std::string("unknown error"))));
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = entries_.find(id); it != entries_.end()) it->second.running = false;
}

}  // namespace thaw::runtime
