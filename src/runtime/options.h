// Per-handle overrides of a deployed function's configuration: Modal's
// Cls.with_options / with_concurrency / with_batching. A call carries them
// as "options": {"config": {...}, "env": {...}, "volumes": {...}}; the
// target they make has a pool of its own (its containers run with them),
// and a snapshot of its own when they change what the snapshot phase sees
// (gpu, env, volumes). Other settings (timeouts, limits, scaling,
// concurrency, batching) restore from the deployed snapshot.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/target.h"

namespace thaw::runtime {

// Whether fn (or one of its methods) is a @web_server: its server holds a
// port of the host, so it runs one container at a time.
bool has_web_server(const FunctionDesc& fn);
// Refuses a scaling setting (min/max/buffer_containers) a @web_server
// function cannot have; `who` names it in the error.
void check_web_server_scaling(const FunctionDesc& fn, const std::string& k, const nlohmann::json& v,
                              const std::string& who);

// Applies options to t; throws with what is wrong with them.
void apply_options(Target& t, const nlohmann::json& options);

}  // namespace thaw::runtime
