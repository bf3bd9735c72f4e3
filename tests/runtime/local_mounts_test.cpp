// Image.add_local_file/add_local_dir in the runtime: the mounts an Image's
// description asks for, and those refused because they would hide what a
// container needs.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/local_mounts.h"

namespace {

using nlohmann::json;
using thaw::runtime::FunctionDesc;
using thaw::runtime::local_mounts;

FunctionDesc with(const json& mounts) {
  FunctionDesc fn;
  fn.name = "f";
  fn.image = {{"base", "debian_slim"}, {"local_mounts", mounts}};
  return fn;
}

std::string refused(const FunctionDesc& fn, const std::vector<std::string>& host_paths) {
  try {
    local_mounts(fn, host_paths);
  } catch (const thaw::Error& e) {
    return e.what();
  }
  return "";
}

TEST(LocalMounts, EachIsBoundReadOnlyWhereTheImageSays) {
  auto mounts = local_mounts(with(json::array({{{"kind", "file"}, {"local", "/home/u/a.yaml"}, {"remote", "/etc/a.yaml"}},
                                               {{"kind", "dir"}, {"local", "/home/u/data"}, {"remote", "/srv/data"}}})),
                             {"/var/lib/thaw", "/opt/thaw/python"});
  ASSERT_EQ(mounts.size(), 2u);
  EXPECT_EQ(mounts[0].source, "/home/u/a.yaml");
  EXPECT_EQ(mounts[0].target, "/etc/a.yaml");
  EXPECT_TRUE(mounts[0].read_only && mounts[0].local);
  EXPECT_EQ(mounts[1].target, "/srv/data");
  // An Image without any (or none at all) asks for nothing.
  FunctionDesc plain;
  EXPECT_TRUE(local_mounts(plain, {}).empty());
}

TEST(LocalMounts, OneThatWouldHideWhatTheContainerNeedsIsRefused) {
  auto fn = with(json::array({{{"kind", "dir"}, {"local", "/home/u/src"}, {"remote", "/var/lib"}}}));
  std::string why = refused(fn, {"/var/lib/thaw"});
  EXPECT_NE(why.find("binding it at /var/lib would hide /var/lib/thaw"), std::string::npos) << why;
  EXPECT_NE(why.find("Image.add_local_dir(/home/u/src, /var/lib)"), std::string::npos) << why;
  // A sibling with a common prefix hides nothing.
  EXPECT_EQ(refused(fn, {"/var/library"}), "");
  EXPECT_NE(refused(with(json::array({{{"kind", "dir"}, {"local", "/a"}, {"remote", "/x"}}})), {"/x"}), "");
}

TEST(LocalMounts, AMalformedDescriptionIsRefusedShowingIt) {
  for (const json& m : {json{{"kind", "socket"}, {"local", "/a"}, {"remote", "/b"}},
                        json{{"kind", "file"}, {"local", "a"}, {"remote", "/b"}},
                        json{{"kind", "file"}, {"local", "/a"}, {"remote", "b"}},
                        json{{"kind", "file"}, {"local", "/a"}, {"remote", "/"}}})
    EXPECT_NE(refused(with(json::array({m})), {}).find("the Image description is"), std::string::npos) << m;
}

}  // namespace
