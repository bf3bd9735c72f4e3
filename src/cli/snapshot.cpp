// thaw snapshot ls | inspect KEY | rm KEY
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/session.h"
#include "common/error.h"
#include "container/fsutil.h"
#include "engine/engine.h"

namespace thaw::cli {

namespace {

// A key or an unambiguous prefix of one.
std::string find_key(const runtime::Store& store, const std::string& prefix) {
  // An empty prefix (`thaw snapshot rm "$KEY"` with KEY unset) would match
  // every key, and so pick the only snapshot there is.
  if (prefix.empty() || prefix.find_first_not_of("0123456789abcdef") != std::string::npos)
    fail("'", prefix, "' is not a snapshot key: give a key, or the start of one, in hex as `thaw snapshot ls` ",
         "lists them");
  std::vector<std::string> hits;
  for (const auto& k : store.snapshot_keys())
    if (k.rfind(prefix, 0) == 0) hits.push_back(k);
  if (hits.empty()) fail("no snapshot with key ", prefix);
  if (hits.size() > 1) fail("key prefix ", prefix, " matches ", hits.size(), " snapshots; give more of it");
  return hits[0];
}

// The app version a snapshot was made for. A failed creation records its
// version with the failure, and the newer of the two is that one.
int version_of(const nlohmann::json& meta) {
  if (auto f = meta.find("create_failed"); f != meta.end() && f->is_object() && f->contains("version"))
    return f->value("version", 0);
  return meta.value("version", 0);
}

int list(Session& s) {
  auto& store = s.ctx.store;
  std::printf("%-14s %-32s %-5s %-10s %-21s %s\n", "KEY", "FUNCTION", "VER", "SIZE", "CREATED", "STATE");
  for (const auto& key : store.snapshot_keys()) {
    auto meta = store.read_meta(key).value_or(nlohmann::json::object());
    std::string fn = meta.value("app", "?") + "." + meta.value("function", "?");
    char size[32];
    std::snprintf(size, sizeof size, "%.1f MiB", meta.value("image_bytes", 0.0) / 1048576.0);
    std::string state = store.has_image(key) ? "ready" : "no image";
    if (meta.contains("create_failed")) state = "creation failed";
    int failures = meta.value("failures", 0);
    if (failures) state += cat(", ", failures, " failed restores");
    if (meta.value("recreated", false)) state += ", recreated";
    if (meta.value("handle", false)) state += ", a with_options handle's";
    std::printf("%-14s %-32s %-5s %-10s %-21s %s\n", key.substr(0, 12).c_str(), fn.c_str(),
                cat("v", version_of(meta)).c_str(), size, meta.value("created", "").c_str(), state.c_str());
  }
  return 0;
}

int inspect(Session& s, const std::string& prefix) {
  std::string key = find_key(s.ctx.store, prefix);
  auto meta = s.ctx.store.read_meta(key).value_or(nlohmann::json::object());
  std::cout << "key " << key << "\n" << meta.dump(2) << "\n";
  if (s.ctx.store.has_image(key)) std::cout << "\n" << engine::inspect(s.ctx.store.snapshot_image(key), false);
  return 0;
}

int remove(Session& s, const std::string& prefix) {
  std::string key = find_key(s.ctx.store, prefix);
  auto lock = s.ctx.store.lock_snapshot(key);
  s.ctx.store.remove_snapshot(key);
  std::printf("Removed snapshot %s.\n", key.c_str());
  return 0;
}

}  // namespace

Command add_snapshot(CLI::App& app) {
  auto key = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("snapshot", "Memory snapshots in the store");
  sub->require_subcommand(1);
  auto* ls = sub->add_subcommand("ls", "List snapshots");
  auto* in = sub->add_subcommand("inspect", "Show a snapshot's metadata and image");
  in->add_option("key", *key, "key (or a unique prefix)")->required();
  auto* rm = sub->add_subcommand("rm", "Remove a snapshot (the next cold start creates it again)");
  rm->add_option("key", *key, "key (or a unique prefix)")->required();
  return {sub, [ls, in, rm, key] {
            Session s;
            if (*ls) return list(s);
            if (*in) return inspect(s, *key);
            if (*rm) return remove(s, *key);
            return 1;
          }};
}

}  // namespace thaw::cli
