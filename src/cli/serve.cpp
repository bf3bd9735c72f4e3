// thaw serve --socket PATH [--http ADDRESS] [--no-warm] [--no-template]

#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "cli/interrupts.h"
#include "cli/session.h"
#include "runtime/scheduler.h"
#include "runtime/server.h"
#include "runtime/web_front.h"

namespace thaw::cli {

Command add_serve(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto no_warm = std::make_shared<bool>(false);
  auto no_template = std::make_shared<bool>(false);
  auto http = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("serve", "Serve calls to deployed apps on a unix socket until stopped");
  sub->add_option("--socket", *path, "the socket to listen on")->required();
  sub->add_option("--http", *http,
                  "also serve the deployed apps' web endpoints (@fastapi_endpoint, @web_endpoint, @asgi_app, "
                  "@wsgi_app) over HTTP at this address: PORT (on 127.0.0.1), HOST:PORT or :PORT (all "
                  "addresses); URLs are http://ADDRESS/<app>/<label or name>");
  sub->add_flag("--no-warm", *no_warm,
                "start no container ahead of calls (min_containers and restore shells are for a long-lived "
                "runtime; the SDK's private one, started for one script, uses this); runs no schedule=");
  sub->add_flag("--no-template", *no_template,
                "restore every container from its snapshot image, instead of copying a live template of the "
                "snapshot kept by its restore shell (for comparisons; implied by --no-warm)");
  return {sub, [path, no_warm, no_template, http] {
            std::unique_ptr<runtime::Server> server;
            std::unique_ptr<runtime::WebFront> web;
            // What the signal thread may stop, published once made.
            // Under stop_mu: the main thread takes them back before it
            // destroys them, while the signal thread may be using them.
            std::mutex stop_mu;
            runtime::Server* server_ptr = nullptr;
            runtime::WebFront* web_ptr = nullptr;
            auto stop_listening = [&] {
              std::lock_guard<std::mutex> lock(stop_mu);
              if (server_ptr) server_ptr->stop();
              if (web_ptr) web_ptr->stop();
            };
            // The first signal stops taking calls and lets those in flight
            // finish, except in the SDK's private runtime (--no-warm),
            // stopped as its script ends: calls still running there (spawned,
            // never fetched) have no one to answer, so they are cancelled.
            // A second one cancels them, kills the containers and exits.
            CallInterrupts interrupts("thaw serve",
                                      *no_warm ? CallInterrupts::First::cancel_quietly : CallInterrupts::First::finish,
                                      [&](const SignalWatcher::Signal&, bool forced) {
                                        if (!forced) stop_listening();
                                      });
            Session s;
            auto watching = interrupts.watch(*s.rt, s.ctx.live);
            s.ctx.socket_path = *path;
            s.rt->set_autoscale(true);
            s.rt->set_keep_warm(!*no_warm);
            s.rt->set_live_templates(!*no_warm && !*no_template);
            server = std::make_unique<runtime::Server>(*s.rt, *path);
            if (!http->empty()) {
              web = std::make_unique<runtime::WebFront>(*s.rt, *http);
              s.ctx.web_url = web->url();
            }
            {
              std::lock_guard<std::mutex> lock(stop_mu);
              server_ptr = server.get();
              web_ptr = web.get();
            }
            if (interrupts.signal()) stop_listening();  // one came before there was anything to stop
            s.log.line(*no_warm ? "Serving calls on " + *path + " (containers start when called)."
                                : "Serving deployed apps on " + *path + ".");
            std::thread web_thread;
            // However the server's loop ends, the web front's thread is joined.
            struct JoinWeb {
              runtime::WebFront* web;
              std::thread& t;
              ~JoinWeb() {
                if (!t.joinable()) return;
                web->stop();
                t.join();
              }
            } join_web{web.get(), web_thread};
            if (web) {
              s.log.line("Serving web endpoints at " + web->url() + "/<app>/<label or name>.");
              web_thread = std::thread([&web, &s] {
                try {
                  web->run();
                } catch (const std::exception& e) {
                  s.log.line(std::string("The web front stopped: ") + e.what());
                }
              });
            }
            std::thread warm([&s, no_warm] {
              if (!*no_warm) s.rt->warm_deployed();
            });
            // Scheduled functions run here only: the SDK's private runtime
            // (--no-warm) lives for one script and is not the app's home.
            std::optional<runtime::Scheduler> scheduler;
            if (!*no_warm) scheduler.emplace(*s.rt);
            server->run();
            if (web) {
              web->stop();
              web_thread.join();
            }
            if (scheduler) scheduler->stop();
            warm.join();
            scheduler.reset();  // waits for scheduled runs in flight
            {
              std::lock_guard<std::mutex> lock(stop_mu);  // the signal thread is done with them
              server_ptr = nullptr;
              web_ptr = nullptr;
            }
            // The watcher stays: a second signal must still end the wait below.
            web.reset();      // waits for the requests in flight
            server.reset();   // waits for the calls in flight
            s.rt->shutdown();
            return 0;
          }};
}

}  // namespace thaw::cli
