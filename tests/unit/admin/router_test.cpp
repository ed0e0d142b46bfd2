#include "admin/router.h"

#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>

namespace deliverd::admin {
namespace {

Request req(std::string method, std::string path) {
  Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  return r;
}

std::optional<Response> run(const Router& router, const Request& r) {
  std::optional<Response> out;
  router.dispatch(r, [&](Response resp) { out = std::move(resp); });
  return out;
}

Handler text(std::string body) {
  return [body](const Request&, Respond respond) {
    Response r;
    r.body = body;
    respond(std::move(r));
  };
}

TEST(Router, ExactPathAndMethodReachTheHandler) {
  Router router;
  router.add("GET", "/healthz", text("get"));
  router.add("POST", "/healthz", text("post"));
  EXPECT_EQ(run(router, req("GET", "/healthz"))->body, "get");
  EXPECT_EQ(run(router, req("POST", "/healthz"))->body, "post");
}

TEST(Router, UnknownPathIs404JsonError) {
  Router router;
  router.add("GET", "/healthz", text("x"));
  auto r = run(router, req("GET", "/nope"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->content_type, "application/json");
  EXPECT_EQ(r->body, R"({"error":{"code":"not_found","message":"no such endpoint: /nope"}})");
  EXPECT_EQ(run(router, req("GET", "/healthz/"))->status, 404);
}

TEST(Router, WrongMethodIs405WithAllow) {
  Router router;
  router.add("GET", "/metrics", text("x"));
  router.add("PUT", "/metrics", text("y"));
  auto r = run(router, req("DELETE", "/metrics"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_NE(r->body.find(R"("code":"method_not_allowed")"), std::string::npos);
  ASSERT_EQ(r->headers.size(), 1u);
  EXPECT_EQ(r->headers[0].first, "Allow");
  EXPECT_EQ(r->headers[0].second, "GET, PUT");
}

TEST(Router, HeadIsServedByGet) {
  Router router;
  router.add("GET", "/healthz", text("ok"));
  EXPECT_EQ(run(router, req("HEAD", "/healthz"))->status, 200);
}

TEST(Router, PatternSegmentsBecomeParamsAndExactWins) {
  Router router;
  router.add("GET", "/v1/mailboxes/{id}", [](const Request& r, Respond respond) {
    Response resp;
    resp.body = *r.param("id");
    respond(std::move(resp));
  });
  router.add("GET", "/v1/mailboxes/export", text("export"));
  EXPECT_EQ(run(router, req("GET", "/v1/mailboxes/mbx_7"))->body, "mbx_7");
  EXPECT_EQ(run(router, req("GET", "/v1/mailboxes/export"))->body, "export");
  EXPECT_EQ(run(router, req("GET", "/v1/mailboxes"))->status, 404);
  EXPECT_EQ(run(router, req("GET", "/v1/mailboxes/a/b"))->status, 404);
  EXPECT_EQ(run(router, req("DELETE", "/v1/mailboxes/mbx_7"))->status, 405);
}

TEST(Router, AsyncHandlerAnswersLater) {
  Router router;
  Respond saved;
  router.add("GET", "/readyz", [&](const Request&, Respond respond) { saved = std::move(respond); });
  std::optional<Response> out;
  router.dispatch(req("GET", "/readyz"), [&](Response r) { out = std::move(r); });
  EXPECT_FALSE(out);
  Response r;
  r.status = 503;
  saved(r);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->status, 503);
}

TEST(Router, ThrowingHandlerGets500OnceOnly) {
  Router router;
  router.add("GET", "/boom", [](const Request&, Respond respond) {
    respond(Response{});
    throw std::runtime_error("late");
  });
  router.add("GET", "/boom2", [](const Request&, Respond) { throw std::runtime_error("x"); });
  int calls = 0;
  router.dispatch(req("GET", "/boom"), [&](Response r) {
    ++calls;
    EXPECT_EQ(r.status, 200);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(run(router, req("GET", "/boom2"))->status, 500);
}

TEST(Router, RoutesListsRegistrations) {
  Router router;
  router.add("GET", "/a", text(""));
  router.add("POST", "/b/{x}", text(""));
  auto routes = router.routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[1], (std::pair<std::string, std::string>{"POST", "/b/{x}"}));
}

TEST(Response, SerializationHasLengthAndDropsInjectedHeaders) {
  Response r;
  r.body = "{}";
  r.headers = {{"X-Ok", "1"}, {"X-Bad", "a\r\nSet-Cookie: x"}};
  std::string wire = serialize_response(r, true, false, false);
  EXPECT_EQ(wire.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(wire.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_NE(wire.find("X-Ok: 1\r\n"), std::string::npos);
  EXPECT_EQ(wire.find("Set-Cookie"), std::string::npos);
  EXPECT_EQ(wire.find("Connection: close"), std::string::npos);
  EXPECT_EQ(wire.substr(wire.size() - 6), "\r\n\r\n{}");
  std::string closing = serialize_response(r, false, true, false);
  EXPECT_NE(closing.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(closing.substr(closing.size() - 4), "\r\n\r\n");  // HEAD: no body
}

TEST(Request, HeaderLookupIsCaseInsensitive) {
  Request r;
  r.headers = {{"Content-Type", "text/plain"}};
  ASSERT_TRUE(r.header("content-type"));
  EXPECT_EQ(*r.header("CONTENT-TYPE"), "text/plain");
  EXPECT_EQ(r.header("accept"), nullptr);
}

}  // namespace
}  // namespace deliverd::admin
