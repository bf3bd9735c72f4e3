// Proxy auth tokens for web endpoints with requires_proxy_auth=True, as
// Modal's: a request must carry a token's key and secret in the Modal-Key
// and Modal-Secret headers. Tokens live in $THAW_HOME/proxy-auth-tokens.json
// (the secret only as its SHA-256), made by `thaw proxy-auth create` and
// read on every check, so tokens made or removed while serving count at once.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace thaw::runtime {

struct ProxyToken {
  std::string key;   // "wk-..." (sent as Modal-Key)
  std::string name;  // what it is for
  std::string created;
};

class ProxyAuth {
 public:
  explicit ProxyAuth(std::string home);
  // A new token: (key, secret). The secret is shown this once.
  std::pair<std::string, std::string> create(const std::string& name);
  std::vector<ProxyToken> list() const;
  // False when no token has that key.
  bool remove(const std::string& key);
  bool check(const std::string& key, const std::string& secret) const;

 private:
  std::string path_, lock_path_;
};

}  // namespace thaw::runtime
