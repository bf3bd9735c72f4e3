// Named secrets in the store, $THAW_HOME/secrets/<name>.json (or a
// <name>.env the user wrote), where Secret.from_name looks them up
// (python/thaw/_secret.py). `thaw secret` makes, lists and removes them.
// Values reach containers at the next deploy: they are resolved then.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace thaw::runtime {

using SecretEnv = std::map<std::string, std::string>;

struct SecretInfo {
  std::string name, file, modified;  // modified: UTC, ISO 8601
  size_t keys = 0;
};

class Secrets {
 public:
  explicit Secrets(const std::string& home);
  // Writes <name>.json, readable by root only. An existing secret of that
  // name is an error unless `replace` (its .env, if any, goes too).
  void create(const std::string& name, const SecretEnv& env, bool replace);
  std::vector<SecretInfo> list() const;
  bool remove(const std::string& name);
  // The secret's variables (as Secret.from_name reads them).
  SecretEnv read(const std::string& name) const;

 private:
  std::string dir_;
};

// KEY=VALUE lines, as Secret.from_dotenv reads them: blank lines and
// comments skipped, `export ` allowed, one pair of matching quotes removed.
SecretEnv parse_dotenv(const std::string& text);
// One KEY=VALUE argument; the key must be a usable variable name.
std::pair<std::string, std::string> parse_assignment(const std::string& arg);

}  // namespace thaw::runtime
