// Limits of the restoring machine that an image may not fit, refused before
// anything is created with what to change.
#include <gtest/gtest.h>

#include "common/error.h"
#include "engine/resources/resources.h"

namespace {

using thaw::engine::check_mapping_count;

TEST(RestoreLimits, ImageWithinMaxMapCountIsTaken) {
  EXPECT_NO_THROW(check_mapping_count(65472, 65530));
  EXPECT_NO_THROW(check_mapping_count(100, 65530));
}

// 65472 mappings under a limit of 65000: the restorer's mmap used to fail
// with "mmap at 0x7f1ac7bc1000 (errno 12)".
TEST(RestoreLimits, TooManyMappingsForMaxMapCountSaysWhatToRaise) {
  try {
    check_mapping_count(65472, 65000);
    FAIL() << "no error";
  } catch (const thaw::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("65472 mappings"), std::string::npos) << msg;
    EXPECT_NE(msg.find("vm.max_map_count here is 65000"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sysctl vm.max_map_count="), std::string::npos) << msg;
  }
}

}  // namespace
