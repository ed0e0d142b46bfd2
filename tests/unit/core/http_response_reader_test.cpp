#include "core/http_response_reader.h"

#include <gtest/gtest.h>

using deliverd::core::HttpResponseReader;
using deliverd::core::HttpsErrorKind;
using State = HttpResponseReader::State;

namespace {

// Feeds the answer one byte at a time, as the slowest connection would deliver it.
State feed_bytewise(HttpResponseReader& r, std::string_view answer) {
  State st = State::More;
  for (size_t i = 0; i < answer.size() && st == State::More; ++i) st = r.feed(answer.substr(i, 1));
  return st;
}

}  // namespace

TEST(HttpResponseReader, ReadsALengthDelimitedAnswerInAnyPieces) {
  HttpResponseReader r({}, false);
  EXPECT_EQ(feed_bytewise(r, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
            State::Complete);
  auto resp = r.take();
  EXPECT_EQ(resp.status, 200);
  ASSERT_NE(resp.header("content-type"), nullptr) << "names are lower-cased";
  EXPECT_EQ(*resp.header("content-type"), "application/json");
  EXPECT_EQ(resp.body, "{}");
}

TEST(HttpResponseReader, DechunksAndEndsACloseDelimitedBodyAtTheClose) {
  HttpResponseReader chunked({}, false);
  EXPECT_EQ(chunked.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"),
            State::Complete);
  EXPECT_EQ(chunked.take().body, "abcde");
  HttpResponseReader closed({}, false);
  EXPECT_EQ(closed.feed("HTTP/1.0 503 Busy\r\n\r\ncome back later"), State::More);
  EXPECT_EQ(closed.end(), State::Complete);
  auto resp = closed.take();
  EXPECT_EQ(resp.status, 503);
  EXPECT_EQ(resp.body, "come back later");
  HttpResponseReader cut({}, false);
  EXPECT_EQ(cut.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), State::More);
  EXPECT_EQ(cut.end(), State::More) << "a body shorter than its length is no answer";
}

TEST(HttpResponseReader, BoundsHeadersBodyAndFramingAsTheBytesCome) {
  HttpResponseReader big_header({64, 1024}, false);
  EXPECT_EQ(big_header.feed("HTTP/1.1 200 OK\r\nX-Filler: " + std::string(100, 'a') + "\r\n"), State::Failed);
  EXPECT_EQ(big_header.error_kind(), HttpsErrorKind::TooLarge);
  EXPECT_EQ(big_header.error(), "headers larger than 64 bytes");

  HttpResponseReader declared({1024, 16}, false);
  EXPECT_EQ(declared.feed("HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n"), State::Failed);
  EXPECT_EQ(declared.error(), "Content-Length 17 exceeds 16 bytes");

  HttpResponseReader streamed({1024, 16}, false);
  EXPECT_EQ(streamed.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n" + std::string(17, 'b')),
            State::Failed);
  EXPECT_EQ(streamed.error(), "body larger than 16 bytes");

  // Chunk extensions are neither header nor body: the total bounds them.
  HttpResponseReader framing({64, 16}, false);
  State st = framing.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
  for (int i = 0; i < 100 && st == State::More; ++i) st = framing.feed(std::string(1024, 'e'));
  EXPECT_EQ(st, State::Failed);
  EXPECT_EQ(framing.error_kind(), HttpsErrorKind::TooLarge);
}

TEST(HttpResponseReader, NamesWhatIsNotHttpAndGivesNoBodyToHead) {
  HttpResponseReader junk({}, false);
  EXPECT_EQ(junk.feed("SSH-2.0-OpenSSH_9.2\r\n"), State::Failed);
  EXPECT_EQ(junk.error_kind(), HttpsErrorKind::BadResponse);
  EXPECT_FALSE(junk.error().empty());
  HttpResponseReader head({}, true);
  EXPECT_EQ(head.feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), State::Complete);
  EXPECT_TRUE(head.take().body.empty());
}
