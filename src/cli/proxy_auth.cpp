// thaw proxy-auth create [--name N] | ls | rm KEY
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "runtime/proxy_auth.h"
#include "runtime/store.h"

namespace thaw::cli {

Command add_proxy_auth(CLI::App& app) {
  auto* sub = app.add_subcommand("proxy-auth",
                                 "Tokens for web endpoints with requires_proxy_auth=True (Modal-Key / Modal-Secret)");
  sub->require_subcommand(1);
  auto name = std::make_shared<std::string>();
  auto key = std::make_shared<std::string>();
  auto* create = sub->add_subcommand("create", "Make a token; prints its key and secret (the secret only now)");
  create->add_option("--name", *name, "what the token is for");
  auto* ls = sub->add_subcommand("ls", "List the tokens (keys and names, never secrets)");
  auto* rm = sub->add_subcommand("rm", "Remove a token: requests with it are refused from then on");
  rm->add_option("key", *key, "the token's key (wk-...)")->required();
  return {sub, [create, ls, rm, name, key] {
            runtime::ProxyAuth auth(runtime::Store::default_home());
            if (create->parsed()) {
              auto [k, secret] = auth.create(*name);
              std::printf("Modal-Key: %s\nModal-Secret: %s\n", k.c_str(), secret.c_str());
              std::fprintf(stderr,
                           "Send both headers with each request to an endpoint with requires_proxy_auth=True; "
                           "the secret is not shown again.\n");
              return 0;
            }
            if (ls->parsed()) {
              std::printf("%-28s %-22s %s\n", "KEY", "CREATED", "NAME");
              for (const auto& t : auth.list())
                std::printf("%-28s %-22s %s\n", t.key.c_str(), t.created.c_str(), t.name.c_str());
              return 0;
            }
            if (rm->parsed()) {
              if (!auth.remove(*key)) fail("proxy-auth rm: no token with key ", *key, " (see `thaw proxy-auth ls`)");
              std::printf("Removed %s.\n", key->c_str());
            }
            return 0;
          }};
}

}  // namespace thaw::cli
