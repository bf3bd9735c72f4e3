// A class's parameters (thaw.parameter fields): each set of values has
// containers of its own, as in Modal ("each unique combination of values
// runs in its own container pool"), and, with memory snapshots, a snapshot
// of its own, taken after @enter(snap=True) ran with those values. A call
// carries "params": {name: value} as the caller gave them (str, int, bool
// as JSON; bytes as {"__bytes__": base64}); the deployed config's
// "parameters" give the defaults ("default_json"). Floats, and integers
// beyond 64 bits (which JSON parsing makes floats), are not routed: as
// numbers they compare equal to others (2.0 and 2; 2^64 + 1 and 2^64).
#pragma once
#include <nlohmann/json.hpp>

#include "runtime/target.h"

namespace thaw::runtime {

// The environment variable that tells a container the values its instance
// is built with (all parameters, as a JSON object).
inline constexpr const char* kClassParamsEnv = "THAW_CLASS_PARAMS";
// Values longer than this (as JSON) are not routed (see apply_class_params).
inline constexpr size_t kMaxRoutedParamsBytes = 16384;

// Gives t the pool (and snapshot) of this set of values. Values that equal
// every default keep the class's own; a class whose parameters cannot be
// told apart this way (no thaw.parameter fields, or a default that is not
// one of the types above) keeps the old way: one pool, instances made in
// its containers on first use. Throws for a parameter the class lacks, a
// value not of its declared "type" (str, int, bool, bytes; a config from
// an SDK that did not write types is not checked), or a required one
// missing.
void apply_class_params(Target& t, const nlohmann::json& params);

}  // namespace thaw::runtime
