#include "runtime/secrets.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/io.h"
#include "container/fsutil.h"
#include "runtime/store.h"

namespace thaw::runtime {

namespace {

// As Python's check for Secret names (python/thaw/_volume.py check_name).
void check_secret_name(const std::string& name) { check_sdk_name("secret", name); }

void check_key(const std::string& key, const std::string& what) {
  bool ok = !key.empty() && !std::isdigit(static_cast<unsigned char>(key[0])) &&
            std::all_of(key.begin(), key.end(),
                        [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
  if (!ok) fail(what, ": '", key, "' is not a variable name (letters, digits and '_', not starting with a digit)");
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

SecretEnv parse_dotenv(const std::string& text) {
  SecretEnv env;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("export ", 0) == 0) line = trim(line.substr(7));
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = trim(line.substr(0, eq)), v = trim(line.substr(eq + 1));
    if (v.size() >= 2 && v.front() == v.back() && (v[0] == '\'' || v[0] == '"')) v = v.substr(1, v.size() - 2);
    env[k] = v;
  }
  return env;
}

std::pair<std::string, std::string> parse_assignment(const std::string& arg) {
  size_t eq = arg.find('=');
  if (eq == std::string::npos) fail("'", arg, "': give each variable as KEY=VALUE");
  std::string key = arg.substr(0, eq);
  check_key(key, "KEY=VALUE");
  return {key, arg.substr(eq + 1)};
}

Secrets::Secrets(const std::string& home) : dir_(home + "/secrets") {}

void Secrets::create(const std::string& name, const SecretEnv& env, bool replace) {
  check_secret_name(name);
  if (env.empty()) fail("secret '", name, "': give it at least one KEY=VALUE (or --from-dotenv / --from-json)");
  for (const auto& [k, v] : env) check_key(k, cat("secret '", name, "'"));
  std::string json_file = cat(dir_, "/", name, ".json"), env_file = cat(dir_, "/", name, ".env");
  bool exists = container::exists(json_file) || container::exists(env_file);
  if (exists && !replace) fail("secret '", name, "' exists already: add --force to replace it");
  container::mkdir_p(dir_, 0700);
  container::write_file_atomic(json_file, nlohmann::json(env).dump(2) + "\n", 0600);
  // Secret.from_name reads a .env before a .json: the old values must not win.
  if (::unlink(env_file.c_str()) != 0 && errno != ENOENT) fail_errno("remove ", env_file);
}

SecretEnv Secrets::read(const std::string& name) const {
  check_secret_name(name);
  std::string env_file = cat(dir_, "/", name, ".env"), json_file = cat(dir_, "/", name, ".json");
  if (container::exists(env_file)) return parse_dotenv(read_file(env_file));
  if (!container::exists(json_file)) fail("no secret '", name, "' (`thaw secret list` lists them)");
  return with_context(json_file, [&] {
    auto j = nlohmann::json::parse(read_file(json_file));
    if (!j.is_object()) fail("not a JSON object of names to values");
    SecretEnv env;
    for (const auto& [k, v] : j.items())
      if (v.is_string()) env[k] = v.get<std::string>();
    return env;
  });
}

std::vector<SecretInfo> Secrets::list() const {
  std::vector<SecretInfo> out;
  for (const auto& file : container::list_dir(dir_)) {
    size_t dot = file.rfind('.');
    if (dot == std::string::npos || file[0] == '.') continue;
    std::string ext = file.substr(dot), name = file.substr(0, dot);
    if (ext != ".env" && ext != ".json") continue;
    // A name with both files is listed once, as the .env that wins.
    if (ext == ".json" && container::exists(cat(dir_, "/", name, ".env"))) continue;
    SecretInfo info{name, cat(dir_, "/", file), "", 0};
    struct stat st;
    if (::stat(info.file.c_str(), &st) == 0) {
      char buf[32];
      struct tm tm;
      gmtime_r(&st.st_mtim.tv_sec, &tm);
      std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
      info.modified = buf;
    }
    try {
      info.keys = read(name).size();
    } catch (const std::exception&) {
      info.keys = 0;  // listed all the same: `thaw secret create --force` mends it
    }
    out.push_back(info);
  }
  std::sort(out.begin(), out.end(), [](const SecretInfo& a, const SecretInfo& b) { return a.name < b.name; });
  return out;
}

bool Secrets::remove(const std::string& name) {
  check_secret_name(name);
  bool any = false;
  for (const char* ext : {".env", ".json"}) {
    std::string f = cat(dir_, "/", name, ext);
    if (::unlink(f.c_str()) == 0)
      any = true;
    else if (errno != ENOENT)
      fail_errno("remove ", f);
  }
  return any;
}

}  // namespace thaw::runtime
