// Limits of the restoring machine that an image may not fit, refused before
// anything is created with what to change.
#include <gtest/gtest.h>

#include "common/error.h"
#include "engine/resources/resources.h"
#include "engine/restorer_error.h"

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

namespace {

using thaw::engine::explain_restorer_error;

// A restore under `ulimit -v` too small for the image used to end with
// "mmap at 0x7f07bc3d4000 (errno 12)" and nothing more.
TEST(RestoreLimits, RestorerOutOfMemoryNamesTheLimits) {
  std::string msg = explain_restorer_error("mmap at 0x7f07bc3d4000 (errno 12)", 1024000000, 65530);
  EXPECT_EQ(msg.rfind("mmap at 0x7f07bc3d4000 (Cannot allocate memory)", 0), 0u) << msg;
  EXPECT_NE(msg.find("RLIMIT_AS, ulimit -v) of 1024000000 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vm.max_map_count (65530)"), std::string::npos) << msg;
}

TEST(RestoreLimits, OtherRestorerErrorsGetTheirText) {
  EXPECT_EQ(explain_restorer_error("mprotect at 0x1000 (errno 22)", UINT64_MAX, 65530),
            "mprotect at 0x1000 (Invalid argument)");
  EXPECT_EQ(explain_restorer_error("page data checksum mismatch (corrupt image) at 0x1000", UINT64_MAX, 65530),
            "page data checksum mismatch (corrupt image) at 0x1000");
}

}  // namespace
