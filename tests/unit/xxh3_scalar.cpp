// The portable loop of xxh3.h, compiled on its own so the tests can check it
// against the SSE2 one on this machine.
#define THAW_XXH3_SCALAR 1
#include "common/xxh3.h"

uint64_t thaw_xxh3_scalar_for_test(const void* data, uint64_t len) { return thaw_xxh3(data, len); }
