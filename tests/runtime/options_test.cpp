// Cls.with_options & co in the runtime: what a call's options change in its
// target (config, env, volumes), its pool and its snapshot key.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/options.h"

namespace {

using nlohmann::json;
using thaw::runtime::apply_options;
using thaw::runtime::Target;

Target deployed() {
  Target t;
  t.app = "app";
  t.version = 3;
  t.fn.name = "Model";
  t.fn.kind = "class";
  t.fn.config = {{"timeout", 300}, {"max_containers", 2}, {"enable_memory_snapshot", true}};
  t.fn.env = {{"KEEP", "1"}, {"DROP", "x"}};
  t.key = "basekey";
  return t;
}

std::string what(const Target& base, const json& options) {
  Target t = base;
  try {
    apply_options(t, options);
  } catch (const thaw::Error& e) {
    return e.what();
  }
  return "";
}

TEST(Options, SettingsTheWorkerAndPoolUseKeepTheSnapshotButNotThePool) {
  Target base = deployed(), t = base;
  apply_options(t, {{"config", {{"timeout", 5}, {"max_concurrent_inputs", 4}}}});
  EXPECT_EQ(t.fn.timeout_s(), 5);
  EXPECT_EQ(t.fn.inputs_at_once(), 4);
  EXPECT_EQ(t.fn.max_containers(), 2);  // untouched
  EXPECT_EQ(t.key, base.key);           // restores from the deployed snapshot
  EXPECT_NE(t.pool_id(), base.pool_id());
  EXPECT_EQ(t.config_overrides, json({{"timeout", 5}, {"max_concurrent_inputs", 4}}));
  // The same options make the same pool; others another.
  Target again = base, other = base;
  apply_options(again, {{"config", {{"timeout", 5}, {"max_concurrent_inputs", 4}}}});
  apply_options(other, {{"config", {{"timeout", 6}}}});
  EXPECT_EQ(again.pool_id(), t.pool_id());
  EXPECT_NE(other.pool_id(), t.pool_id());
}

TEST(Options, WhatTheSnapshotPhaseSeesGetsASnapshotOfItsOwn) {
  Target base = deployed();
  Target env = base, gpu = base, vol = base;
  apply_options(env, {{"env", {{"NEW", "2"}, {"DROP", nullptr}}}});
  EXPECT_EQ(env.fn.env, (std::map<std::string, std::string>{{"KEEP", "1"}, {"NEW", "2"}}));
  apply_options(gpu, {{"config", {{"gpu", "H100"}}}});
  EXPECT_EQ(gpu.fn.gpu(), "H100");
  apply_options(vol, {{"volumes", {{"/data", "weights"}}}});
  EXPECT_EQ(vol.fn.volumes.at("/data"), "weights");
  for (const Target* t : {&env, &gpu, &vol}) EXPECT_NE(t->key, base.key) << t->pool_id();
  EXPECT_NE(env.key, gpu.key);
  // A target without snapshots gets none.
  Target cold = base;
  cold.key.clear();
  apply_options(cold, {{"env", {{"NEW", "2"}}}});
  EXPECT_TRUE(cold.key.empty());
}

TEST(Options, BadOptionsAreRefusedSayingWhy) {
  Target base = deployed();
  EXPECT_NE(what(base, {{"config", {{"enable_memory_snapshot", false}}}}).find("cannot be changed per handle"),
            std::string::npos);
  EXPECT_NE(what(base, {{"image", json::object()}}).find("unknown section \"image\""), std::string::npos);
  EXPECT_NE(what(base, {{"env", {{"X", 1}}}}).find("must be a string or null"), std::string::npos);
  EXPECT_NE(what(base, {{"volumes", {{"/data", "../etc"}}}}), "");
  EXPECT_NE(what(base, {{"volumes", {{"data", "v"}}}}).find("must be absolute"), std::string::npos);
  EXPECT_NE(what(base, json::array()).find("must be an object"), std::string::npos);
  EXPECT_EQ(what(base, {{"config", json::object()}}), "");
}

}  // namespace

namespace {

TEST(Options, ValuesPathsAndCombinationsTheDeployedFunctionCannotTake) {
  Target base = deployed();
  for (const char* path : {"/", "/data/..", "/x/.", "//x", "/a//b", "/a/"})
    EXPECT_NE(what(base, {{"volumes", {{path, "v"}}}}).find("must be absolute"), std::string::npos) << path;
  EXPECT_EQ(what(base, {{"volumes", {{"/a/b", "v"}}}}), "");
  EXPECT_NE(what(base, {{"config", {{"timeout", "x"}}}}).find("timeout cannot be \"x\""), std::string::npos);
  EXPECT_NE(what(base, {{"config", {{"max_containers", 0}}}}), "");
  EXPECT_NE(what(base, {{"config", {{"batched", {{"max_batch_size", 4}, {"wait_ms", 5}}}}}}).find("no @batched"),
            std::string::npos);
  Target batched = base;
  batched.fn.config["batched"] = {{"max_batch_size", 2}, {"wait_ms", 5}};
  EXPECT_EQ(what(batched, {{"config", {{"batched", {{"max_batch_size", 4}, {"wait_ms", 5}}}}}}), "");
  EXPECT_NE(what(batched, {{"config", {{"max_concurrent_inputs", 4}}}}).find("@batched"), std::string::npos);
  Target web = base;
  web.fn.config["methods"] = {{"ui", {{"web_endpoint", {{"kind", "web_server"}, {"port", 8000}}}}}};
  EXPECT_NE(what(web, {{"config", {{"max_containers", 2}}}}).find("@web_server"), std::string::npos);
  EXPECT_EQ(what(web, {{"config", {{"timeout", 9}}}}), "");
}

TEST(Options, AHandleKeepsNoWarmContainersAndLimitsGetTheirOwnSnapshot) {
  Target base = deployed();
  base.fn.config["min_containers"] = 2;
  Target t = base;
  apply_options(t, {{"config", {{"memory", 512}}}});
  EXPECT_EQ(t.fn.min_containers(), 0);
  EXPECT_NE(t.key, base.key);
}

}  // namespace

namespace {

TEST(Options, AReadOnlyVolumeOfAHandleIsMountedReadOnlyInPlaceOfTheDeployedOne) {
  Target base = deployed();
  base.fn.volumes = {{"/data", "weights"}, {"/ro", "weights"}};
  base.fn.config["read_only_volumes"] = json::array({"/ro"});
  Target ro = base, rw = base;
  apply_options(ro, {{"volumes", {{"/data", {{"name", "weights"}, {"read_only", true}}}}}});
  EXPECT_EQ(ro.fn.config["read_only_volumes"], json::array({"/ro", "/data"}));
  apply_options(rw, {{"volumes", {{"/ro", "weights"}}}});  // a plain name: read-write
  EXPECT_EQ(rw.fn.config["read_only_volumes"], json::array());
  // Each has a snapshot (and pool) of its own: the snapshot phase sees its mounts.
  EXPECT_NE(ro.key, base.key);
  EXPECT_NE(ro.key, rw.key);
  EXPECT_NE(ro.pool_id(), rw.pool_id());
  EXPECT_NE(what(base, {{"volumes", {{"/d", {{"name", "w"}, {"read_only", "yes"}}}}}}).find("read_only must be true or false"),
            std::string::npos);
  EXPECT_NE(what(base, {{"volumes", {{"/d", {{"name", "w"}, {"mode", "ro"}}}}}}).find("unknown key \"mode\""),
            std::string::npos);
  EXPECT_NE(what(base, {{"volumes", {{"/d", {{"read_only", true}}}}}}).find("must be a Volume name"),
            std::string::npos);
}

}  // namespace
