#include "core/json_writer.h"

#include <gtest/gtest.h>

using deliverd::core::JsonWriter;

TEST(JsonWriter, BuildsNestedObjectsWithCommas) {
  JsonWriter w;
  w.begin_object().field("a", 1).field("b", "x").key("c").begin_array().value(true).null().end_array().end_object();
  EXPECT_EQ(w.str(), R"({"a":1,"b":"x","c":[true,null]})");
}

TEST(JsonWriter, EscapesControlAndQuoteCharacters) {
  JsonWriter w;
  w.value(std::string_view("a\"b\\c\n\x01", 7));
  EXPECT_EQ(w.str(), R"("a\"b\\c\n\u0001")");
}

TEST(JsonWriter, ReplacesInvalidUtf8WithReplacementCharacter) {
  JsonWriter w;
  w.value(std::string_view("ok\xff\xc3(", 5));
  EXPECT_EQ(w.str(), "\"ok\xef\xbf\xbd\xef\xbf\xbd(\"");
}

TEST(JsonWriter, KeepsValidMultibyteUtf8) {
  JsonWriter w;
  w.value("Grüße 🚀");
  EXPECT_EQ(w.str(), "\"Grüße 🚀\"");
}
