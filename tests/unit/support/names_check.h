#pragma once
// Checks one enum's name table: every enumerator has a row, rows are unique and non-empty (except
// a "not set" first enumerator whose wire form is ""), and every name parses back to its value.
#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "core/names.h"

namespace deliverd::testing {

enum class FirstMayBeEmpty { No, Yes };

template <class E, size_t N, class ToString, class FromName>
void expect_names_round_trip(const core::Named<E> (&table)[N], ToString to_string, FromName from_name,
                             FirstMayBeEmpty empty_first = FirstMayBeEmpty::No) {
  std::set<std::string_view> seen;
  for (size_t i = 0; i < N; ++i) {
    const E value = table[i].value;
    const std::string_view name = to_string(value);
    EXPECT_EQ(static_cast<size_t>(value), i) << "row " << i << " is out of order";
    EXPECT_EQ(name, table[i].name);
    if (!(i == 0 && empty_first == FirstMayBeEmpty::Yes)) {
      EXPECT_FALSE(name.empty()) << "enumerator " << i;
    }
    EXPECT_TRUE(seen.insert(name).second) << "duplicate name '" << name << "'";
    std::optional<E> back = from_name(name);
    ASSERT_TRUE(back.has_value()) << "'" << name << "' does not parse";
    EXPECT_EQ(static_cast<size_t>(*back), i) << "'" << name << "' parses to another enumerator";
  }
  EXPECT_FALSE(from_name("no such name").has_value());
  // One past the last row has no name: an enumerator added without a row would show up here.
  EXPECT_EQ(to_string(static_cast<E>(N)), std::string_view());
}

}  // namespace deliverd::testing
