#pragma once
// The daemon's side of inbound/ (docs/inbound.md): which mailboxes this daemon watches, and what
// a signal read from one of them does. Every mailbox with IMAP settings is watched by exactly one
// daemon of the fleet: a Redis lease per mailbox, taken with SET NX and renewed every third of
// its life; a daemon that dies stops renewing and another takes the watch over within one lease.
// The cursor (UIDVALIDITY, last UID) is in PostgreSQL (store/inbound_watch.h), so the next owner
// goes on where the last one stopped.
//
// A signal is matched to the delivery it is about (store::find_sent_message: the Message-IDs it
// names, else its recipient within [inbound] correlation_window); one that matches nothing is
// counted and changes nothing. A matched one is published on the results stream
// (signal_event) and has its effect: a hard bounce goes through policy::Gate::learn_late_bounce
// (suppression "bounce_async", bounce guard), a complaint suppresses ("complaint"), a reply
// suppresses when [inbound] suppress_on_reply. The watcher moves past the message only once the
// event is published, so a crash in between reads it again: effects are idempotent (a
// suppression row is one per address) or, for the bounce guard's count, err towards pausing.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/lifetime.h"
#include "core/timer.h"
#include "core/tls_context.h"
#include "daemon/config.h"
#include "store/mailboxes.h"

namespace deliverd {
namespace dns {
class Resolver;
}
namespace queue {
class RedisClient;
class Publisher;
}  // namespace queue
namespace store {
class PgConnection;
class AddressHasher;
}  // namespace store
namespace policy {
class Gate;
}
}  // namespace deliverd

namespace deliverd::daemon {

class MailboxDirectory;
class OAuthTokens;

struct InboundParts {
  uv_loop_t* loop = nullptr;
  dns::Resolver* resolver = nullptr;
  queue::RedisClient* redis = nullptr;
  queue::Publisher* publisher = nullptr;
  store::PgConnection* pg = nullptr;
  const store::AddressHasher* addresses = nullptr;
  policy::Gate* gate = nullptr;
  const MailboxDirectory* mailboxes = nullptr;
  OAuthTokens* oauth = nullptr;
  std::shared_ptr<core::TlsContext> tls;  // trust for IMAP servers: the SMTP client's
  std::string lease_prefix;               // "<redis prefix>inbound:"
  std::string owner;                      // this daemon's name in leases and the API (consumer)
  std::function<int64_t()> now_ms;        // wall clock
};

class InboundWatchers {
 public:
  InboundWatchers(InboundParts parts, Config::Inbound cfg);
  ~InboundWatchers();
  InboundWatchers(const InboundWatchers&) = delete;
  InboundWatchers& operator=(const InboundWatchers&) = delete;

  // Looks at the mailboxes now and then every third of the lease.
  void start();
  // A mailbox row changed: its watcher starts again with the new settings (or goes).
  void mailbox_changed(const store::MailboxRef& ref);
  void reconfigure(Config::Inbound cfg, std::shared_ptr<core::TlsContext> tls);
  // Drain: every watcher stops and its lease is given back, so another daemon takes over at once.
  void stop();

  size_t watching() const { return watches_.size(); }

 private:
  class Watch;
  void scan();
  void hold(const store::MailboxRef& ref, const store::Mailbox& m);
  void drop(const store::MailboxRef& ref, bool release);
  void update_gauge();

  InboundParts parts_;
  Config::Inbound cfg_;
  std::map<store::MailboxRef, std::unique_ptr<Watch>> watches_;
  std::map<store::MailboxRef, bool> asking_;  // lease requests on their way
  core::TimerHandle timer_;
  bool stopped_ = false;
  core::Lifetime alive_;
};

}  // namespace deliverd::daemon
