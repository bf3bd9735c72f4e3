#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "container/channel.h"

using nlohmann::json;
using thaw::UniqueFd;
using thaw::container::recv_message;
using thaw::container::send_message;
using thaw::container::binary_payloads;
using thaw::container::text_payloads;

namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
};

json bytes(const std::string& s) { return json::binary(std::vector<uint8_t>(s.begin(), s.end())); }

void put_word(std::string& out, uint32_t n) {
  for (int i = 0; i < 4; i++) out += static_cast<char>((n >> (8 * i)) & 0xff);
}

// A hand-made frame with bytes after its text.
std::string frame(const json& text, const std::string& blobs) {
  std::string body = text.dump(), out;
  put_word(out, static_cast<uint32_t>(body.size()) | 0x80000000u);
  put_word(out, static_cast<uint32_t>(blobs.size()));
  return out + body + blobs;
}

json where(const char* pointer, int len) { return json::array({json::array({pointer, len})}); }

}  // namespace

TEST(Channel, BytesTravelAfterTheTextWhereverTheyAre) {
  Pair p;
  std::string big(5 << 20, '\x01');
  json msg = {{"type", "result"}, {"value", bytes(big)},
              {"values", json::array({bytes("one"), {{"a/b~c", bytes("")}, {"n", 1}}})}, {"s", "text"}};
  std::thread writer([&] { send_message(p.a.get(), msg); });
  auto got = recv_message(p.b.get(), 10000);
  writer.join();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, msg);
  EXPECT_FALSE(got->contains("$blobs"));
}

TEST(Channel, AMessageWithoutBytesIsPlainJson) {
  Pair p;
  send_message(p.a.get(), {{"type", "bye"}});
  char head[4];
  ASSERT_EQ(::read(p.b.get(), head, 4), 4);
  EXPECT_EQ(head[3] & 0x80, 0);
}

TEST(Channel, BytesThatDoNotAddUpAreRefused) {
  struct Case {
    json text;
    std::string blobs, error;
  } cases[] = {
      {{{"v", nullptr}}, "abc", "no \"$blobs\""},
      {{{"v", nullptr}, {"$blobs", where("/v", 5)}}, "abc", "add up to more"},
      {{{"v", nullptr}, {"$blobs", where("/v", 1)}}, "abc", "2 bytes sent that no"},
      {{{"v", nullptr}, {"$blobs", where("v", 3)}}, "abc", "pointer"},
      // Never made, grown or replaced by a pointer: only a null is filled.
      {{{"v", nullptr}, {"$blobs", where("/nowhere/deep", 3)}}, "abc", "pointer"},
      {{{"v", nullptr}, {"type", "call"}, {"$blobs", where("/type", 3)}}, "abc", "names a value"},
      {{{"v", json::array({nullptr})}, {"$blobs", where("/v/3000000000", 3)}}, "abc", "pointer"},
  };
  for (const auto& c : cases) {
    Pair p;
    std::string f = frame(c.text, c.blobs);
    ASSERT_EQ(::write(p.a.get(), f.data(), f.size()), ssize_t(f.size()));
    try {
      recv_message(p.b.get(), 10000);
      ADD_FAILURE() << "accepted " << c.text.dump();
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(c.error), std::string::npos) << e.what();
    }
  }
}

TEST(Channel, PayloadsKeptAsTextBecomeBytesAgain) {
  json msg = {{"result", {{"value", bytes("hi!")}, {"ok", true}, {"s", "aGkh"}}}};
  std::vector<std::string> where;
  json stored = text_payloads(msg, &where);
  EXPECT_EQ(stored, json({{"result", {{"value", "aGkh"}, {"ok", true}, {"s", "aGkh"}}}}));
  EXPECT_EQ(where, std::vector<std::string>{"/result/value"});
  binary_payloads(stored, where);
  EXPECT_EQ(stored, msg);  // the string that only looks like base64 stays a string
}

TEST(Channel, AMessageOverTheLimitIsRefusedBeforeAnythingIsSent) {
  Pair p;
  json big = {{"value", json::binary(std::vector<uint8_t>((1u << 30) + 1))}};
  EXPECT_THROW(send_message(p.a.get(), big), thaw::container::MessageTooLarge);
  send_message(p.a.get(), {{"type", "bye"}});
  auto got = recv_message(p.b.get(), 10000);
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)["type"], "bye");
}
