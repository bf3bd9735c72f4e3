#include "runtime/call_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "common/error.h"
#include "common/io.h"
#include "container/channel.h"
#include "container/fsutil.h"

namespace thaw::runtime {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

constexpr auto kPollEvery = std::chrono::milliseconds(50);
constexpr size_t kIdHexChars = 24;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json error_reply(const std::string& id, const std::string& text, const std::string& kind) {
  return {{"type", "error"}, {"call_id", id}, {"error", text}, {"kind", kind}};
}

}  // namespace

bool CallStore::valid_id(const std::string& id) {
  if (id.size() != 3 + kIdHexChars || id.compare(0, 3, "fc-") != 0) return false;
  for (size_t i = 3; i < id.size(); i++)
    if (!std::isxdigit(static_cast<unsigned char>(id[i])) || std::isupper(static_cast<unsigned char>(id[i])))
      return false;
  return true;
}

CallStore::CallStore(const std::string& home) : dir_(home + "/function-calls") {
  std::error_code ec;
  fs::create_directories(dir_ + "/owners", ec);
  if (ec) fail("function calls: cannot create ", dir_, "/owners: ", ec.message());
  owner_ = cat(::getpid(), "-", random_hex(6));
  owner_lock_.emplace(dir_ + "/owners/" + owner_ + ".lock");
  sweep();
}

CallStore::~CallStore() {
  std::error_code ec;
  fs::remove(dir_ + "/owners/" + owner_ + ".lock", ec);
}

std::string CallStore::begin(const std::string& label) {
  std::string id = "fc-" + random_hex(kIdHexChars / 2);
  container::write_file_atomic(
      path_of(id),
      json{{"state", "running"}, {"label", label}, {"owner", owner_}, {"spawned", unix_now()}}.dump());
  std::lock_guard<std::mutex> lock(mu_);
  running_[id] = std::make_shared<Running>();
  return id;
}

void CallStore::finish(const std::string& id, const json& result) {
  std::string label;
  if (auto rec = read_record(id)) label = rec->value("label", "");
  // Written before the waiters are woken: a waiter that comes after the
  // entry is gone reads it from the file.
  bool written = true;
  try {
    // Bytes as base64 text, and where they were, to be bytes again when sent.
    std::vector<std::string> binary_at;
    json record{{"state", "done"}, {"label", label}, {"finished", unix_now()},
                {"result", container::text_payloads(result, &binary_at)}};
    record["binary_at"] = binary_at;
    container::write_file_atomic(path_of(id), record.dump());
  } catch (const std::exception& e) {
    written = false;
    std::fprintf(stderr, "thaw: function call %s: cannot keep its result on disk (%s); only this runtime has it\n",
                 id.c_str(), e.what());
  }
  std::error_code ec;
  fs::remove(cancel_path_of(id), ec);
  std::lock_guard<std::mutex> lock(mu_);
  if (!written) unwritten_[id] = result;
  auto it = running_.find(id);
  if (it == running_.end()) return;
  it->second->done = true;
  it->second->result = result;
  running_.erase(it);
  cv_.notify_all();
}

std::optional<json> CallStore::read_record(const std::string& id) const {
  std::string text;
  if (!try_read_file(path_of(id), &text)) return std::nullopt;
  try {
    json j = json::parse(text);
    if (j.is_object()) return j;
  } catch (const json::exception&) {
  }
  return std::nullopt;  // not one of ours; treated as missing
}

bool CallStore::owner_alive(const std::string& owner) const {
  if (owner == owner_) return true;
  if (owner.empty() || owner.find('/') != std::string::npos) return false;
  std::string path = dir_ + "/owners/" + owner + ".lock";
  if (::access(path.c_str(), F_OK) != 0) return false;
  try {
    return !FileLock::try_lock(path).has_value();
  } catch (const std::exception&) {
    return true;  // cannot tell: not declared lost (the wait can still end)
  }
}

json CallStore::wait(const std::string& id, std::optional<double> timeout_s, const std::function<bool()>& abandoned) {
  if (!valid_id(id))
    return error_reply(id, cat("'", id, "' is not a function call id (they look like fc- and 24 hex digits, ",
                               "as FunctionCall.object_id gives)"),
                       "not_found");
  // Beyond a few years is no limit (and a time_point would overflow).
  if (timeout_s && *timeout_s > 1e8) timeout_s.reset();
  std::optional<Clock::time_point> deadline;
  if (timeout_s) deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(std::max(0.0, *timeout_s)));
  auto gone = [&] { return abandoned && abandoned(); };
  json timeout = {{"type", "timeout"}, {"call_id", id}};
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (auto u = unwritten_.find(id); u != unwritten_.end()) return u->second;
    auto it = running_.find(id);
    if (it != running_.end()) {
      auto entry = it->second;
      for (;;) {
        auto until = Clock::now() + std::chrono::milliseconds(100);
        if (deadline && *deadline < until) until = *deadline;
        if (cv_.wait_until(lock, until, [&] { return entry->done; })) return entry->result;
        if ((deadline && Clock::now() >= *deadline) || gone()) return timeout;
      }
    }
  }
  // Run by another runtime, or done: the file says.
  for (;;) {
    auto rec = read_record(id);
    if (!rec)
      return error_reply(id, cat("no function call ", id, ": it was never spawned here (THAW_HOME ",
                                 fs::path(dir_).parent_path().string(), "), or its result has expired (results ",
                                 "are kept for 7 days)"),
                         "not_found");
    if (rec->value("state", "") == "done" && rec->contains("result")) {
      json result = std::move((*rec)["result"]);
      if (auto b = rec->find("binary_at"); b != rec->end() && b->is_array())
        container::binary_payloads(result, b->get<std::vector<std::string>>());
      return result;
    }
    std::string owner = rec->is_object() && (*rec)["owner"].is_string() ? (*rec)["owner"].get<std::string>() : "";
    bool lost = !owner_alive(owner);
    if (owner == owner_) {
      // Ours and not running: finished, and the file says otherwise.
      std::lock_guard<std::mutex> lock(mu_);
      if (auto u = unwritten_.find(id); u != unwritten_.end()) return u->second;
      lost = !running_.count(id);
    }
    if (lost)
      // Which runtime it was is not kept: a `thaw serve` killed, or the one
      // the SDK started for a script that has ended. Say both.
      return error_reply(id, cat("function call ", id, " (", rec->value("label", "?"), ") was lost: the thaw ",
                                 "runtime running it stopped before it finished (it was stopped or killed; the ",
                                 "runtime the SDK starts for a script ends with that script). Spawn it again; ",
                                 "calls that must outlive the spawning process need a `thaw serve` runtime ",
                                 "(THAW_RUNTIME_SOCKET)"),
                         "lost");
    if ((deadline && Clock::now() >= *deadline) || gone()) return timeout;
    std::this_thread::sleep_for(kPollEvery);
  }
}

json CallStore::cancel(const std::string& id) {
  if (!valid_id(id)) return error_reply(id, cat("'", id, "' is not a function call id"), "not_found");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (unwritten_.count(id)) return {{"type", "done"}, {"call_id", id}};
    if (auto it = running_.find(id); it != running_.end()) {
      it->second->cancelled = true;
      return {{"type", "cancelling"}, {"call_id", id}};
    }
  }
  auto rec = read_record(id);
  if (!rec) return error_reply(id, cat("no function call ", id, " (never spawned here, or expired)"), "not_found");
  if (rec->value("state", "") == "done") return {{"type", "done"}, {"call_id", id}};
  std::string owner = (*rec)["owner"].is_string() ? (*rec)["owner"].get<std::string>() : "";
  if (owner == owner_ || !owner_alive(owner))
    return error_reply(id, cat("function call ", id, " was lost: the runtime running it has stopped"), "lost");
  // Another runtime runs it: it looks for this file while the call waits.
  container::write_file_atomic(cancel_path_of(id), "cancel\n");
  // It may have finished meanwhile (and removed no marker of ours).
  if (auto again = read_record(id); again && again->value("state", "") == "done") {
    std::error_code ec;
    fs::remove(cancel_path_of(id), ec);
    return {{"type", "done"}, {"call_id", id}};
  }
  return {{"type", "cancelling"}, {"call_id", id}};
}

std::function<bool()> CallStore::cancel_check(const std::string& id) {
  std::shared_ptr<Running> entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = running_.find(id); it != running_.end()) entry = it->second;
  }
  if (!entry) return [] { return false; };
  return [entry, marker = cancel_path_of(id)] { return entry->cancelled || ::access(marker.c_str(), F_OK) == 0; };
}

void CallStore::sweep() {
  std::error_code ec;
  auto cutoff = fs::file_time_type::clock::now() - kKeepResults;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string name = e.path().filename().string();
    // Results, and what a crash left of one being written.
    bool result = name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0;
    bool marker = name.size() > 7 && name.compare(name.size() - 7, 7, ".cancel") == 0;
    if (!result && !marker && name.find(".json.tmp") == std::string::npos && name.find(".cancel.tmp") == std::string::npos)
      continue;
    std::error_code ec2;
    if (e.last_write_time(ec2) < cutoff && !ec2) fs::remove(e.path(), ec2);
  }
  for (const auto& e : fs::directory_iterator(dir_ + "/owners", ec)) {
    std::string owner = e.path().stem().string();
    if (owner == owner_) continue;
    // A lock no one holds is a runtime gone: its file goes. Only an old
    // one: a runtime starting now creates its file before it locks it.
    std::error_code ec2;
    if (e.last_write_time(ec2) > fs::file_time_type::clock::now() - std::chrono::minutes(1) || ec2) continue;
    if (auto held = FileLock::try_lock(e.path().string())) {
      fs::remove(e.path(), ec2);
    }
  }
}

}  // namespace thaw::runtime
