#pragma once
// The one idiom for "a callback may arrive after its owner is gone" (STYLE.md §1): the owner
// embeds a Lifetime; every callback it hands to someone else captures token() and tests it
// before touching the owner. The lifetime ends when the owner is destroyed or calls end()
// (close() before destruction), after which every token reads false.
//
//   redis_.eval(script, argv, [this, alive = alive_.token()](const RedisReply& r) {
//     if (!alive) return;  // the owner is gone: do nothing, touch nothing
//     ...
//   });
#include <memory>

namespace deliverd::core {

class Lifetime {
 public:
  class Token {
   public:
    Token() = default;
    explicit operator bool() const { return !alive_.expired(); }

   private:
    friend class Lifetime;
    explicit Token(std::weak_ptr<const bool> alive) : alive_(std::move(alive)) {}
    std::weak_ptr<const bool> alive_;
  };

  Lifetime() = default;
  Lifetime(const Lifetime&) = delete;  // a copy would be a second owner's lifetime
  Lifetime& operator=(const Lifetime&) = delete;

  Token token() const { return Token(alive_); }
  bool ended() const { return !alive_; }
  // Idempotent: tokens taken before or after read false from now on.
  void end() { alive_.reset(); }

 private:
  std::shared_ptr<const bool> alive_ = std::make_shared<const bool>(true);
};

}  // namespace deliverd::core

namespace deliverd::core {

// The one rule for an object that can end inside a call it makes (STYLE.md §1), for objects whose
// libuv handles belong to members: every entry from outside (a stream or timer callback, a public
// method) holds an Entry; finish_self() marks the end, and the object is deleted as the outermost
// Entry returns, or at once when none is open. Nothing else deletes it.
template <class T>
class DeletesItself {
 protected:
  class Entry {
   public:
    explicit Entry(DeletesItself* o) : o_(o) { ++o_->depth_; }
    ~Entry() {
      if (--o_->depth_ == 0 && o_->finished_) delete static_cast<T*>(o_);
    }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

   private:
    DeletesItself* o_;
  };

  DeletesItself() = default;
  ~DeletesItself() = default;
  void finish_self() {
    if (finished_) return;
    finished_ = true;
    if (depth_ == 0) delete static_cast<T*>(this);
  }
  bool finished_self() const { return finished_; }

 private:
  int depth_ = 0;
  bool finished_ = false;
};

}  // namespace deliverd::core
