#include "runtime/proxy_auth.h"

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/io.h"
#include "container/fsutil.h"
#include "runtime/log.h"
#include "runtime/sha256.h"
#include "runtime/store.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

json read_tokens(const std::string& path) {
  std::string text;
  if (!try_read_file(path, &text)) return json::array();
  try {
    json j = json::parse(text);
    if (j.is_object() && j.contains("tokens") && j["tokens"].is_array()) return j["tokens"];
  } catch (const json::exception&) {
  }
  fail(path, " is not a proxy auth token file; move it away and create the tokens again");
}

void write_tokens(const std::string& path, const json& tokens) {
  container::write_file_atomic(path, json{{"tokens", tokens}}.dump(2) + "\n");
}

// Equal strings, in a time that does not tell how much of them matched.
bool same(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char d = 0;
  for (size_t i = 0; i < a.size(); i++) d |= static_cast<unsigned char>(a[i] ^ b[i]);
  return d == 0;
}

}  // namespace

ProxyAuth::ProxyAuth(std::string home)
    : path_(home + "/proxy-auth-tokens.json"), lock_path_(home + "/proxy-auth-tokens.lock") {}

std::pair<std::string, std::string> ProxyAuth::create(const std::string& name) {
  container::mkdir_p(path_.substr(0, path_.rfind('/')));
  FileLock lock(lock_path_);
  json tokens = read_tokens(path_);
  std::string key = "wk-" + random_hex(12), secret = "ws-" + random_hex(24);
  tokens.push_back({{"key", key}, {"name", name}, {"created", utc_now_iso()}, {"secret_sha256", sha256_hex(secret)}});
  write_tokens(path_, tokens);
  return {key, secret};
}

std::vector<ProxyToken> ProxyAuth::list() const {
  std::vector<ProxyToken> out;
  for (const auto& t : read_tokens(path_))
    out.push_back({t.value("key", ""), t.value("name", ""), t.value("created", "")});
  return out;
}

bool ProxyAuth::remove(const std::string& key) {
  if (!container::exists(path_)) return false;
  FileLock lock(lock_path_);
  json tokens = read_tokens(path_), kept = json::array();
  for (const auto& t : tokens)
    if (t.value("key", "") != key) kept.push_back(t);
  if (kept.size() == tokens.size()) return false;
  write_tokens(path_, kept);
  return true;
}

bool ProxyAuth::check(const std::string& key, const std::string& secret) const {
  if (key.empty() || secret.empty()) return false;
  std::string digest = sha256_hex(secret);
  bool ok = false;
  for (const auto& t : read_tokens(path_))
    if (t.value("key", "") == key) ok = same(t.value("secret_sha256", ""), digest) || ok;
  return ok;
}

}  // namespace thaw::runtime
