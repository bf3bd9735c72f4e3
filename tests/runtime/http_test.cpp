// The HTTP of `thaw serve --http`: parsing requests (from a real socket
// pair, in pieces as a network delivers them), formatting responses,
// base64 for bodies, routes to endpoints and the listen address.
#include "runtime/http.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "common/base64.h"
#include "common/unique_fd.h"
#include "runtime/app.h"
#include "runtime/web_front.h"

namespace thaw::runtime {
namespace {

struct Pair {
  UniqueFd ours, theirs;
  Pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ours.reset(sv[0]);
    theirs.reset(sv[1]);
  }
  // Sends `text` in pieces of `piece` bytes, a little apart.
  std::thread send_slowly(std::string text, size_t piece) {
    return std::thread([this, text, piece] {
      for (size_t i = 0; i < text.size(); i += piece) {
        std::string part = text.substr(i, piece);
        ASSERT_EQ(::write(theirs.get(), part.data(), part.size()), ssize_t(part.size()));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
};

TEST(Http, ParsesARequestWithABodyArrivingInPieces) {
  Pair p;
  std::string body = "{\"a\": [1, 2, 3]}";
  auto t = p.send_slowly("POST /app/fn/x%20y?q=1&r=two HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                         "X-Many: 1\r\nx-many: 2\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body,
                         7);
  auto req = read_request(p.ours.get(), 5000, 1 << 20);
  t.join();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->method, "POST");
  EXPECT_EQ(req->path, "/app/fn/x%20y");
  EXPECT_EQ(req->query, "q=1&r=two");
  EXPECT_EQ(req->header("content-type"), "application/json");
  EXPECT_EQ(req->header("x-many"), "1");
  EXPECT_EQ(req->headers.size(), 5u);
  EXPECT_EQ(req->body, body);
}

TEST(Http, ReadsAChunkedBody) {
  Pair p;
  auto t = p.send_slowly("PUT /a/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                         "7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n", 3);
  auto req = read_request(p.ours.get(), 5000, 1 << 20);
  t.join();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->body, "hello, world");
}

TEST(Http, AnswersExpectContinueBeforeTheBody) {
  Pair p;
  std::string head = "POST /a/b HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  ASSERT_EQ(::write(p.theirs.get(), head.data(), head.size()), ssize_t(head.size()));
  std::thread client([&] {
    char buf[64] = {};
    ssize_t n = ::read(p.theirs.get(), buf, sizeof buf - 1);
    EXPECT_EQ(std::string(buf, n > 0 ? size_t(n) : 0), "HTTP/1.1 100 Continue\r\n\r\n");
    ASSERT_EQ(::write(p.theirs.get(), "abc", 3), 3);
  });
  auto req = read_request(p.ours.get(), 5000, 1 << 20);
  client.join();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->body, "abc");
}

TEST(Http, RefusesWhatItCannotServeWithTheRightStatus) {
  auto status_of = [](const std::string& text, size_t max_body = 1 << 20, int timeout_ms = 2000) {
    Pair p;
    EXPECT_EQ(::write(p.theirs.get(), text.data(), text.size()), ssize_t(text.size()));
    try {
      read_request(p.ours.get(), timeout_ms, max_body);
    } catch (const HttpError& e) {
      return e.status();
    }
    return 0;
  };
  EXPECT_EQ(status_of("GARBAGE\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET http://elsewhere/ HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET / HTTP/2\r\n\r\n"), 505);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nno colon\r\n\r\n"), 400);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n", 5), 413);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nTransfer-Encoding: \xff\r\n\r\n"), 501);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello"), 400);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n"), 400);
  EXPECT_EQ(status_of(std::string("GET /\0 HTTP/1.1\r\n\r\n", 19)), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nX: " + std::string(70000, 'a')), 431);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 1 << 20, 200), 408);
}

TEST(Http, NoContinueForABodyTooLarge) {
  Pair p;
  std::string head = "POST /a/b HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100000000\r\n\r\n";
  ASSERT_EQ(::write(p.theirs.get(), head.data(), head.size()), ssize_t(head.size()));
  int status = 0;
  try {
    read_request(p.ours.get(), 2000, 1 << 20);
  } catch (const HttpError& e) {
    status = e.status();
  }
  EXPECT_EQ(status, 413);
  p.ours.reset();  // nothing was written to the client before the refusal
  char buf[64];
  EXPECT_EQ(::read(p.theirs.get(), buf, sizeof buf), 0);
}

TEST(Http, NothingSentIsNoRequest) {
  Pair p;
  p.theirs.reset();
  EXPECT_FALSE(read_request(p.ours.get(), 1000, 1 << 20));
}

TEST(Http, AConnectionReadsPipelinedRequestsOneAfterAnother) {
  Pair p;
  // Two requests in one write, the second's body split off in a later one:
  // bytes past the first request are kept for the second.
  std::string both = "POST /a/b HTTP/1.1\r\nContent-Length: 3\r\n\r\nonePOST /a/c HTTP/1.1\r\nContent-Length: 3\r\n\r\ntw";
  ASSERT_EQ(::write(p.theirs.get(), both.data(), both.size()), ssize_t(both.size()));
  HttpConnection c(p.ours.get());
  auto first = c.next(1000, 5000, 1 << 20);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->path, "/a/b");
  EXPECT_EQ(first->body, "one");
  auto t = p.send_slowly("o", 1);
  auto second = c.next(1000, 5000, 1 << 20);
  t.join();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->path, "/a/c");
  EXPECT_EQ(second->body, "two");
  // Nothing more within the idle time: no request, and no error either.
  EXPECT_FALSE(c.next(50, 5000, 1 << 20));
  p.theirs.reset();
  EXPECT_FALSE(c.next(5000, 5000, 1 << 20));
}

TEST(Http, BlankLinesBeforeARequestAreSkipped) {
  Pair p;
  std::string both = "POST /a/b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\r\n\r\nGET /a/c HTTP/1.1\r\n\r\n";
  ASSERT_EQ(::write(p.theirs.get(), both.data(), both.size()), ssize_t(both.size()));
  HttpConnection c(p.ours.get());
  auto first = c.next(1000, 5000, 1 << 20);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->body, "hi");
  auto second = c.next(1000, 5000, 1 << 20);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->path, "/a/c");
  p.theirs.reset();
  EXPECT_FALSE(c.next(1000, 5000, 1 << 20));
}

TEST(Http, AmbiguousFramingIsRefused) {
  for (std::string req : {"POST /a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                          "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
                          "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"}) {
    Pair p;
    ASSERT_EQ(::write(p.theirs.get(), req.data(), req.size()), ssize_t(req.size()));
    try {
      read_request(p.ours.get(), 2000, 1 << 20);
      ADD_FAILURE() << "read: " << req;
    } catch (const HttpError& e) {
      EXPECT_EQ(e.status(), 400) << req;
    }
  }
}

TEST(Http, AHalfSentRequestAfterAnIdleWaitStillTimesOut) {
  Pair p;
  std::string part = "GET /a/b HTTP/1.1\r\nHost: h\r\n";
  ASSERT_EQ(::write(p.theirs.get(), part.data(), part.size()), ssize_t(part.size()));
  HttpConnection c(p.ours.get());
  try {
    c.next(5000, 100, 1 << 20);
    ADD_FAILURE() << "a request that never ends was read";
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 408);
  }
}

TEST(Http, KeepAliveFollowsTheVersionAndTheConnectionHeader) {
  auto req = [](const std::string& version, const std::string& connection) {
    std::string head = "GET / " + version + "\r\nHost: h";
    if (!connection.empty()) head += "\r\nConnection: " + connection;
    return parse_request_head(head);
  };
  EXPECT_TRUE(wants_keep_alive(req("HTTP/1.1", "")));
  EXPECT_FALSE(wants_keep_alive(req("HTTP/1.1", "close")));
  EXPECT_FALSE(wants_keep_alive(req("HTTP/1.1", "Upgrade, Close")));
  EXPECT_FALSE(wants_keep_alive(req("HTTP/1.0", "")));
  EXPECT_TRUE(wants_keep_alive(req("HTTP/1.0", "Keep-Alive")));
  EXPECT_TRUE(wants_keep_alive(req("HTTP/1.1", "closed")));  // a token, not a prefix
  EXPECT_EQ(format_response(200, {}, "ok", false, true),
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\nok");
  EXPECT_EQ(format_stream_head(200, {}, true, true),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\n");
  // A stream ended by the close cannot keep its connection.
  EXPECT_EQ(format_stream_head(200, {}, false, true), "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
}

TEST(Http, FormatsResponsesItsOwnWay) {
  std::string r = format_response(201, {{"Content-Type", "text/plain"}, {"Content-Length", "999"},
                                        {"X-Evil", "a\r\nInjected: yes"}, {"X-Ok", "1"}}, "hi");
  EXPECT_EQ(r, "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Ok: 1\r\ncontent-length: 2\r\n"
               "connection: close\r\n\r\nhi");
  EXPECT_EQ(format_response(200, {}, "body", true), "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\n");
  EXPECT_EQ(format_response(204, {}, ""), "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
}

TEST(Base64, RoundTripsEveryLengthAndRefusesJunk) {
  std::string all;
  for (int i = 0; i < 256; i++) all += char(i);
  for (size_t n = 0; n <= all.size(); n += 1) {
    auto s = all.substr(0, n);
    auto back = base64_decode(base64_encode(s));
    ASSERT_TRUE(back) << n;
    EXPECT_EQ(*back, s) << n;
  }
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_FALSE(base64_decode("Zm9vYg="));
  EXPECT_FALSE(base64_decode("Zm9v!g=="));
  EXPECT_FALSE(base64_decode("Zg==Zm9v"));
}

TEST(WebRoute, FindsFunctionsByLabelOrNameAndMethodsAsClassDotMethod) {
  AppDesc app;
  FunctionDesc f;
  f.name = "square";
  f.config = {{"web_endpoint", {{"kind", "fastapi_endpoint"}, {"method", "GET"}}}};
  FunctionDesc g;
  g.name = "echo";
  g.config = {{"web_endpoint", {{"kind", "fastapi_endpoint"}, {"label", "echo-body"}}}};
  FunctionDesc plain;
  plain.name = "plain";
  FunctionDesc c;
  c.name = "Model";
  c.kind = "class";
  c.config = {{"methods", {{"predict", {{"web_endpoint", {{"kind", "fastapi_endpoint"}}}}}, {"other", nlohmann::json::object()}}}};
  app.functions = {f, g, plain, c};
  auto r = find_web_route(app, "square");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->function, "square");
  EXPECT_FALSE(r->method);
  EXPECT_TRUE(find_web_route(app, "echo-body"));
  EXPECT_FALSE(find_web_route(app, "echo"));  // a label replaces the name
  EXPECT_FALSE(find_web_route(app, "plain"));
  auto m = find_web_route(app, "Model.predict");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->function, "Model");
  EXPECT_EQ(*m->method, "predict");
  EXPECT_FALSE(find_web_route(app, "Model.other"));
}

TEST(WebFront, ListenAddresses) {
  EXPECT_EQ(parse_listen_address("8000"), std::make_pair(std::string("127.0.0.1"), 8000));
  EXPECT_EQ(parse_listen_address(":0"), std::make_pair(std::string("0.0.0.0"), 0));
  EXPECT_EQ(parse_listen_address("10.0.0.1:80"), std::make_pair(std::string("10.0.0.1"), 80));
  EXPECT_THROW(parse_listen_address("localhost:80"), Error);
  EXPECT_THROW(parse_listen_address("70000"), Error);
  EXPECT_THROW(parse_listen_address("1.2.3.4:"), Error);
}

}  // namespace
}  // namespace thaw::runtime

namespace {

TEST(HttpStream, AStreamedAnswerIsItsHeadThenChunks) {
  std::string head = thaw::runtime::format_stream_head(
      200, {{"Content-Type", "text/event-stream"}, {"Content-Length", "5"}, {"X-Bad\r\nInjected", "1"}});
  EXPECT_EQ(head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            "connection: close\r\n\r\n");
  EXPECT_EQ(thaw::runtime::format_chunk("data: one\n\n"), "b\r\ndata: one\n\n\r\n");
  EXPECT_EQ(thaw::runtime::format_chunk(""), "0\r\n\r\n");
}

}  // namespace

namespace {

TEST(HttpStream, AnHttp10ClientGetsABodyEndedByTheConnection) {
  EXPECT_EQ(thaw::runtime::format_stream_head(200, {{"Content-Type", "text/plain"}}, false),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nconnection: close\r\n\r\n");
}

}  // namespace
