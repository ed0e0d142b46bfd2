#pragma once
// Result<T, E>: a value or an error, for the hot path where exceptions are not used
// (std::expected is C++23; this is the small subset we need under C++20).
#include <utility>
#include <variant>

namespace deliverd::core {

template <class E>
struct Err {
  // A constructor rather than aggregate init: clang 14 has no class template argument deduction
  // for aggregates, so Err(std::string(...)) would not compile there.
  Err(E e) : error(std::move(e)) {}
  E error;
};
template <class E>
Err(E) -> Err<E>;

template <class T, class E>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  template <class F>
  Result(Err<F> e) : v_(std::in_place_index<1>, E(std::move(e.error))) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const E& error() const { return std::get<1>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, E> v_;
};

// Result<void, E> spelled as Result<Ok, E>.
struct Ok {};

}  // namespace deliverd::core
