#pragma once
// One name table per enum (STYLE.md §7): decisions compare enumerators; the text exists only
// where a value leaves the process or comes in, through the enum's table. A table lists every
// enumerator in declaration order with its wire name; in_order() lets the header check that at
// compile time, so a rename is one line and a misplaced row does not build.
#include <cstddef>
#include <optional>
#include <string_view>

namespace deliverd::core {

template <class E>
struct Named {
  E value;
  std::string_view name;
};

template <class E, size_t N>
constexpr bool in_order(const Named<E> (&table)[N]) {
  for (size_t i = 0; i < N; ++i)
    if (static_cast<size_t>(table[i].value) != i) return false;
  return true;
}

template <class E, size_t N>
constexpr std::string_view name_in(const Named<E> (&table)[N], E value) {
  const auto i = static_cast<size_t>(value);
  return i < N ? table[i].name : std::string_view();
}

template <class E, size_t N>
constexpr std::optional<E> value_in(const Named<E> (&table)[N], std::string_view name) {
  for (const auto& row : table)
    if (row.name == name) return row.value;
  return std::nullopt;
}

}  // namespace deliverd::core
