// thaw call APP FUNCTION [--method M] [--args JSON] [--kwargs JSON] [--params JSON]
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/interrupts.h"
#include "cli/session.h"
#include "common/error.h"
#include "runtime/server.h"

namespace thaw::cli {

Command add_call(CLI::App& app) {
  struct Opts {
    std::string app, function, method, args = "[]", kwargs = "{}", params;
    bool cold = false;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand(
      "call", "Call a deployed function once and print its result as JSON (a generator's values: one per line)");
  sub->add_option("app", o->app, "the deployed app")->required();
  sub->add_option("function", o->function, "the function or class")->required();
  sub->add_option("--method,-m", o->method, "the method, for a class");
  sub->add_option("--args", o->args, "positional arguments as a JSON list");
  sub->add_option("--kwargs", o->kwargs, "keyword arguments as a JSON object");
  sub->add_option("--params", o->params,
                  "a class's parameters (modal.parameter()) as a JSON object, as in Model(size=3)");
  sub->add_flag("--cold", o->cold, "start the container cold even if there is a snapshot (for comparisons)");
  return {sub, [o] {
            nlohmann::json args, kwargs;
            try {
              args = nlohmann::json::parse(o->args);
              kwargs = nlohmann::json::parse(o->kwargs);
            } catch (const std::exception& e) {
              fail("--args/--kwargs: not JSON: ", e.what());
            }
            if (!args.is_array()) fail("--args must be a JSON list");
            if (!kwargs.is_object()) fail("--kwargs must be a JSON object");
            if (!o->params.empty()) {
              nlohmann::json params;
              try {
                params = nlohmann::json::parse(o->params);
              } catch (const std::exception& e) {
                fail("--params: not JSON: ", e.what());
              }
              if (!params.is_object()) fail("--params must be a JSON object, e.g. '{\"size\": 3}'");
              // Where the SDK puts an instance's parameters (thaw._functions.PARAMS_KEY).
              kwargs["__thaw_params__"] = {{"args", nlohmann::json::array()}, {"kwargs", params}};
            }
            // Ctrl-C cancels the call and stops its container (cli/interrupts.h).
            CallInterrupts interrupts("thaw call");
            Session s;
            auto watching = interrupts.watch(*s.rt, s.ctx.live);
            // Calls the function makes itself come back to this runtime.
            auto server = std::make_unique<runtime::PrivateServer>(*s.rt);
            s.ctx.socket_path = server->path();
            // JSON in, JSON out: the worker converts (args_json, value_json),
            // so no Python starts here.
            nlohmann::json msg = {{"type", "call"},          {"id", 1},
                                  {"app", o->app},           {"function", o->function},
                                  {"method", o->method.empty() ? nlohmann::json() : nlohmann::json(o->method)},
                                  {"args", nullptr},         {"kwargs", nullptr},
                                  {"args_json", args},       {"kwargs_json", kwargs},
                                  {"result_format", "json"}, {"mode", "deployed"}};
            // Which containers (and snapshot) serve this set of values.
            if (kwargs.contains("__thaw_params__")) msg["params"] = kwargs["__thaw_params__"]["kwargs"];
            // A generator's values are printed one per line as it yields them.
            msg["stream"] = true;
            // Output that can no longer be written (`thaw call … | head -1`)
            // throws, which cancels the generator.
            auto print_value = [](const nlohmann::json& m) {
              std::printf("%s\n", m.value("value_json", nlohmann::json()).dump().c_str());
              if (std::fflush(stdout) != 0 || std::ferror(stdout)) fail_errno("writing the result to stdout");
            };
            auto r = s.rt->call(msg, !o->cold, print_value);
            int rc = 0;
            if (r.value("ok", false)) {
              if (!r.contains("streamed")) print_value(r);
            } else {
              std::string tb = r.value("traceback", "");
              std::string error = r.value("error", std::string("call failed"));
              // A traceback ends with the error's own line: not twice.
              std::string tail = tb;
              while (!tail.empty() && tail.back() == '\n') tail.pop_back();
              bool said = !tail.empty() && tail.size() >= error.size() &&
                          tail.compare(tail.size() - error.size(), error.size(), error) == 0;
              if (said)
                std::fprintf(stderr, "%s\n", tail.c_str());
              else
                std::fprintf(stderr, "%s%s\n", tb.c_str(), error.c_str());
              rc = 1;
            }
            std::fflush(nullptr);
            server.reset();
            s.rt->shutdown();
            return interrupts.exit_status(rc);
          }};
}

}  // namespace thaw::cli
