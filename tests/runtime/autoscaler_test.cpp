// update_autoscaler in the runtime: which settings are taken, how updates
// from several runtimes merge, and that a new version starts afresh.
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/autoscaler.h"
#include "runtime/pool.h"
#include "temp_dir.h"

namespace {

using nlohmann::json;
using namespace thaw::runtime;

std::string refusal(const json& update, const FunctionDesc& fn = {}) {
  try {
    check_autoscaler_update(update, fn);
  } catch (const thaw::Error& e) {
    return e.what();
  }
  return "";
}

TEST(Autoscaler, TakesTheFourSettingsAndDropsNulls) {
  json ok = check_autoscaler_update(
      {{"min_containers", 2}, {"max_containers", 5}, {"buffer_containers", 0}, {"scaledown_window", 1.5},
       {"min_containers", 2}},
      {});
  EXPECT_EQ(ok, json({{"min_containers", 2}, {"max_containers", 5}, {"buffer_containers", 0}, {"scaledown_window", 1.5}}));
  EXPECT_EQ(check_autoscaler_update({{"min_containers", nullptr}, {"max_containers", 1}}, {}),
            json({{"max_containers", 1}}));
}

TEST(Autoscaler, RefusesWhatItCannotApply) {
  EXPECT_NE(refusal({{"max_containers", 0}}).find("an integer from 1 to 1000"), std::string::npos);
  EXPECT_NE(refusal({{"min_containers", -1}}).find("min_containers cannot be -1"), std::string::npos);
  EXPECT_NE(refusal({{"min_containers", 1.5}}), "");
  EXPECT_NE(refusal({{"min_containers", true}}), "");
  EXPECT_NE(refusal({{"scaledown_window", 0}}).find("seconds"), std::string::npos);
  EXPECT_NE(refusal({{"scaledown_window", "60"}}), "");
  EXPECT_NE(refusal({{"timeout", 5}}).find("unknown setting 'timeout'"), std::string::npos);
  EXPECT_NE(refusal(json::array()), "");
  FunctionDesc server;
  server.name = "ui";
  server.config = {{"web_endpoint", {{"kind", "web_server"}, {"port", 8000}}}};
  EXPECT_NE(refusal({{"max_containers", 2}}, server).find("@web_server"), std::string::npos);
  EXPECT_NE(refusal({{"buffer_containers", 1}}, server), "");
  EXPECT_EQ(refusal({{"min_containers", 1}, {"max_containers", 1}}, server), "");
}

class AutoscalerStore : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<Store>(home_.path());
    store_->write_version("app", 1, {{"version", 1}});
    store_->write_version("app", 2, {{"version", 2}});
  }

  thaw::runtime::testing::TempDir home_{"thaw-autoscaler"};
  std::unique_ptr<Store> store_;
};

TEST_F(AutoscalerStore, UpdatesMergeAndANewVersionStartsAfresh) {
  EXPECT_EQ(load_autoscaler(*store_, "app", 1, "f"), json::object());
  save_autoscaler(*store_, "app", 1, "f", {{"min_containers", 2}, {"scaledown_window", 5}});
  save_autoscaler(*store_, "app", 1, "f", {{"min_containers", 0}, {"max_containers", 3}});
  save_autoscaler(*store_, "app", 1, "g", {{"buffer_containers", 1}});
  EXPECT_EQ(load_autoscaler(*store_, "app", 1, "f"),
            json({{"min_containers", 0}, {"scaledown_window", 5}, {"max_containers", 3}}));
  EXPECT_EQ(load_autoscaler(*store_, "app", 1, "g"), json({{"buffer_containers", 1}}));
  EXPECT_EQ(load_autoscaler(*store_, "app", 2, "f"), json::object());

  Target t;
  t.fn.config = {{"min_containers", 4}, {"max_containers", 10}, {"timeout", 30}};
  apply_autoscaler(t, load_autoscaler(*store_, "app", 1, "f"));
  ScaleLimits l = ScaleLimits::of(t.fn);
  EXPECT_EQ(l.min_containers, 0);
  EXPECT_EQ(l.max_containers, 3);
  EXPECT_EQ(l.buffer_containers, 0);
  EXPECT_EQ(l.scaledown_window_s, 5);
  EXPECT_EQ(t.fn.config["timeout"], 30);
}

TEST_F(AutoscalerStore, ACheckSeesTheMergedSettingsAndABadFileHarmsNoCall) {
  save_autoscaler(*store_, "app", 1, "f", {{"max_containers", 2}});
  auto refuse_min_over_max = [](const json& s) {
    if (s.value("min_containers", 0) > s.value("max_containers", 1000)) thaw::fail("min over max");
  };
  EXPECT_THROW(save_autoscaler(*store_, "app", 1, "f", {{"min_containers", 3}}, refuse_min_over_max), thaw::Error);
  EXPECT_EQ(load_autoscaler(*store_, "app", 1, "f"), json({{"max_containers", 2}}));  // unchanged
  EXPECT_EQ(save_autoscaler(*store_, "app", 1, "f", {{"min_containers", 2}}, refuse_min_over_max),
            json({{"max_containers", 2}, {"min_containers", 2}}));
  // Someone wrote junk: calls scale with the decorators' settings; an
  // update says what to do.
  std::ofstream(store_->version_dir("app", 1) + "/autoscaler.json") << "[1, 2";
  EXPECT_EQ(load_autoscaler(*store_, "app", 1, "f"), json::object());
  try {
    save_autoscaler(*store_, "app", 1, "f", {{"min_containers", 1}});
    ADD_FAILURE() << "saved over a file it cannot read";
  } catch (const thaw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("remove it to reset"), std::string::npos) << e.what();
  }
}

TEST_F(AutoscalerStore, UpdatesAtOnceAllCount) {
  // Runtimes updating at once (threads here; each takes the lock file anew,
  // as another process would): none of their settings is lost.
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; i++)
    ts.emplace_back([this, i] { save_autoscaler(*store_, "app", 1, "f" + std::to_string(i), {{"min_containers", i}}); });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 8; i++)
    EXPECT_EQ(load_autoscaler(*store_, "app", 1, "f" + std::to_string(i)), json({{"min_containers", i}}));
}

}  // namespace
