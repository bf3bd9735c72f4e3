// thaw secret create NAME [KEY=VALUE ...] [--from-dotenv F] [--from-json F] [--force] | list | delete NAME
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/error.h"
#include "common/io.h"
#include "runtime/secrets.h"
#include "runtime/store.h"

namespace thaw::cli {

namespace {

struct SecretArgs {
  std::string name, dotenv, json_file;
  std::vector<std::string> pairs;
  bool force = false;
};

runtime::SecretEnv gather(const SecretArgs& a) {
  runtime::SecretEnv env;
  if (!a.dotenv.empty()) env = runtime::parse_dotenv(read_file(a.dotenv));
  if (!a.json_file.empty()) {
    with_context(a.json_file, [&] {
      auto j = nlohmann::json::parse(read_file(a.json_file), nullptr, false);
      if (!j.is_object()) fail("give a JSON object of names to string values");
      for (const auto& [k, v] : j.items()) {
        if (!v.is_string()) fail("the value of ", k, " is not a string");
        env[k] = v.get<std::string>();
      }
    });
  }
  // Given on the command line: these win over the files'.
  for (const auto& p : a.pairs) {
    auto [k, v] = runtime::parse_assignment(p);
    env[k] = v;
  }
  return env;
}

}  // namespace

Command add_secret(CLI::App& app) {
  auto* sub = app.add_subcommand("secret", "Named secrets for Secret.from_name (values are read at deploy)");
  sub->require_subcommand(1);
  auto a = std::make_shared<SecretArgs>();
  auto* create = sub->add_subcommand("create", "Make a secret from KEY=VALUE pairs and/or a .env or JSON file");
  create->add_option("name", a->name, "the secret's name")->required();
  create->add_option("pairs", a->pairs, "KEY=VALUE ...");
  create->add_option("--from-dotenv", a->dotenv, "a .env file of KEY=VALUE lines");
  create->add_option("--from-json", a->json_file, "a JSON file holding an object of names to values");
  create->add_flag("--force", a->force, "replace a secret of that name");
  auto* list = sub->add_subcommand("list", "List the secrets (names and key counts, never values)")->alias("ls");
  auto* del = sub->add_subcommand("delete", "Remove a secret (deployed apps keep the values they were deployed with)")
                  ->alias("rm");
  del->add_option("name", a->name, "the secret's name")->required();
  return {sub, [create, list, del, a] {
            runtime::Secrets secrets(runtime::Store::default_home());
            if (create->parsed()) {
              auto env = gather(*a);
              secrets.create(a->name, env, a->force);
              std::printf("Created secret %s with %zu key%s.\n", a->name.c_str(), env.size(), env.size() == 1 ? "" : "s");
              std::fprintf(stderr, "Use it with thaw.Secret.from_name(\"%s\"); apps see it from their next deploy.\n",
                           a->name.c_str());
              return 0;
            }
            if (list->parsed()) {
              std::printf("%-32s %-5s %-22s %s\n", "NAME", "KEYS", "MODIFIED", "FILE");
              for (const auto& s : secrets.list())
                std::printf("%-32s %-5zu %-22s %s\n", s.name.c_str(), s.keys, s.modified.c_str(), s.file.c_str());
              return 0;
            }
            if (del->parsed()) {
              if (!secrets.remove(a->name)) fail("no secret '", a->name, "' (`thaw secret list` lists them)");
              std::printf("Deleted secret %s.\n", a->name.c_str());
            }
            return 0;
          }};
}

}  // namespace thaw::cli
