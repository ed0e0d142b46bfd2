#include "admin/http_request_parser.h"

#include <gtest/gtest.h>

#include <vector>

namespace deliverd::admin {
namespace {

TEST(RequestParser, ParsesARequestWithQueryHeadersAndBody) {
  RequestParser p;
  std::string wire = "POST /v1/x?a=1&b=2 HTTP/1.1\r\nHost: h\r\nX-Thing: one\r\nContent-Length: 5\r\n\r\nhello";
  EXPECT_EQ(p.feed(wire), wire.size());
  ASSERT_TRUE(p.complete());
  EXPECT_TRUE(p.keep_alive());
  Request r = p.take();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/x");
  EXPECT_EQ(r.query, "a=1&b=2");
  EXPECT_EQ(r.body, "hello");
  ASSERT_TRUE(r.header("x-thing"));
  EXPECT_EQ(*r.header("x-thing"), "one");
  EXPECT_FALSE(r.http10);
}

TEST(RequestParser, StopsAfterEachPipelinedRequest) {
  RequestParser p;
  std::string first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  std::string wire = first + "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  size_t n = p.feed(wire);
  EXPECT_EQ(n, first.size());
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.take().path, "/a");
  EXPECT_EQ(p.feed(std::string_view(wire).substr(n)), wire.size() - n);
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.take().path, "/b");
}

TEST(RequestParser, ByteAtATimeGivesTheSameRequest) {
  RequestParser p;
  std::string wire = "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  for (size_t i = 0; i < wire.size(); ++i) {
    EXPECT_FALSE(p.complete());
    EXPECT_EQ(p.feed(std::string_view(wire).substr(i, 1)), 1u);
    if (i == 0) {
      EXPECT_TRUE(p.in_progress());
    }
  }
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.take().body, "abcde");
}

TEST(RequestParser, ConnectionCloseAndHttp10) {
  RequestParser a;
  a.feed("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(a.complete());
  EXPECT_FALSE(a.keep_alive());
  RequestParser b;
  b.feed("GET / HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(b.complete());
  EXPECT_FALSE(b.keep_alive());
  EXPECT_TRUE(b.take().http10);
}

TEST(RequestParser, OversizedHeadersAre431) {
  RequestParser p(RequestLimits{1024, 100, 1 << 20});
  std::string wire = "GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  p.feed(wire);
  ASSERT_TRUE(p.error());
  EXPECT_EQ(p.error()->status, 431);
  EXPECT_FALSE(p.complete());
}

TEST(RequestParser, TooManySmallHeadersAre431) {
  RequestParser p(RequestLimits{16384, 10, 1 << 20});
  std::string wire = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 11; ++i) wire += "h" + std::to_string(i) + ": v\r\n";
  p.feed(wire + "\r\n");
  ASSERT_TRUE(p.error());
  EXPECT_EQ(p.error()->status, 431);
}

TEST(RequestParser, DeclaredOversizedBodyIs413BeforeItArrives) {
  RequestParser p(RequestLimits{16384, 100, 100});
  p.feed("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n");
  ASSERT_TRUE(p.error());
  EXPECT_EQ(p.error()->status, 413);
  EXPECT_EQ(p.error()->code, "body_too_large");
}

TEST(RequestParser, ChunkedBodyOverTheLimitIs413) {
  RequestParser p(RequestLimits{16384, 100, 10});
  p.feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
  ASSERT_TRUE(p.error());
  EXPECT_EQ(p.error()->status, 413);
}

TEST(RequestParser, GarbageIs400) {
  for (std::string bad : std::vector<std::string>{"HELLO\r\n\r\n", "GET / HTTP/1.1\r\nBad Header\r\n\r\n", "GET http://evil/ HTTP/1.1\r\n\r\n",
                          "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", std::string("GET /\0 HTTP/1.1\r\n\r\n", 20)}) {
    RequestParser p;
    p.feed(bad);
    ASSERT_TRUE(p.error()) << bad;
    EXPECT_EQ(p.error()->status, 400) << bad;
    EXPECT_EQ(p.feed("GET / HTTP/1.1\r\n\r\n"), 0u) << "no parsing after an error";
  }
}

}  // namespace
}  // namespace deliverd::admin
