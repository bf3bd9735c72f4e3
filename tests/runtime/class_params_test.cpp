// Which pool a class's parameter values route to (runtime/class_params.h).
#include "runtime/class_params.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace thaw::runtime {
namespace {

using nlohmann::json;

Target model() {
  Target t;
  t.app = "app";
  t.fn.name = "Model";
  t.fn.config["parameters"] = {{"size", {{"required", false}, {"default_json", 3}}},
                               {"name", {{"required", false}, {"default_json", "base"}}}};
  t.key = "deployed-key";
  return t;
}

TEST(ClassParams, ValuesOtherThanTheDefaultsGetAPoolAndSnapshotOfTheirOwn) {
  Target t = model();
  apply_class_params(t, json{{"size", 7}});
  EXPECT_EQ(t.fn.env[kClassParamsEnv], R"({"name":"base","size":7})");
  EXPECT_FALSE(t.variant.empty());
  EXPECT_TRUE(t.own_snapshot);
  EXPECT_NE(t.key, "deployed-key");
  Target u = model();
  apply_class_params(u, json{{"size", 8}});
  EXPECT_NE(u.variant, t.variant);
  EXPECT_NE(u.key, t.key);
}

TEST(ClassParams, TheDefaultsKeepTheClassOwnPool) {
  Target t = model();
  apply_class_params(t, json{{"size", 3}});
  EXPECT_TRUE(t.variant.empty());
  EXPECT_EQ(t.key, "deployed-key");
  EXPECT_FALSE(t.fn.env.count(kClassParamsEnv));
}

TEST(ClassParams, FloatsAndIntegersBeyond64BitsAreNotRouted) {
  // 3.0 equals the default 3 as a number, 2^64 + 1 parses as 2^64.
  for (const char* given : {R"({"size": 3.0})", R"({"size": 7.5})", R"({"size": 18446744073709551617})"}) {
    Target t = model();
    apply_class_params(t, json::parse(given));
    EXPECT_TRUE(t.variant.empty()) << given;
    EXPECT_EQ(t.key, "deployed-key") << given;
    EXPECT_FALSE(t.fn.env.count(kClassParamsEnv)) << given;
  }
  Target t = model();
  apply_class_params(t, json::parse(R"({"size": 18446744073709551615})"));  // 2^64 - 1 fits
  EXPECT_FALSE(t.variant.empty());
}

TEST(ClassParams, AValueOfAnotherTypeIsRefusedNamingIt) {
  Target typed = model();
  typed.fn.config["parameters"]["size"]["type"] = "int";
  typed.fn.config["parameters"]["name"]["type"] = "str";
  for (auto [given, said] : std::vector<std::pair<const char*, const char*>>{
           {R"({"size": "big"})", R"(Model(...): parameter 'size' is int, got str "big"; pass a JSON integer)"},
           {R"({"size": true})", "parameter 'size' is int, got bool true"},
           {R"({"size": 7.5})", "parameter 'size' is int, got float 7.5"},
           {R"({"name": 3})", "parameter 'name' is str, got int 3; pass a JSON string"},
           {R"({"name": {"__bytes__": "AA=="}})", "parameter 'name' is str, got bytes"}}) {
    Target t = typed;
    try {
      apply_class_params(t, json::parse(given));
      ADD_FAILURE() << given << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(said), std::string::npos) << e.what();
    }
    EXPECT_TRUE(t.variant.empty());
    EXPECT_EQ(t.key, "deployed-key");
  }
  Target t = typed;
  apply_class_params(t, json::parse(R"({"size": 18446744073709551617})"));  // not routed, as untyped
  EXPECT_TRUE(t.variant.empty());
  t = typed;
  apply_class_params(t, json{{"size", 7}, {"name", "x"}});
  EXPECT_FALSE(t.variant.empty());
}

TEST(ClassParams, AnUnknownParameterIsAnError) {
  Target t = model();
  try {
    apply_class_params(t, json{{"sise", 4}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no parameter 'sise' (it has: name, size)"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace thaw::runtime
