#include "inbound/classifier.h"

#include <algorithm>

#include "core/ascii.h"
#include "core/utf8.h"
#include "inbound/arf.h"
#include "inbound/headers.h"

namespace deliverd::inbound {

namespace {

constexpr std::string_view kKindNames[] = {"ignored", "bounce", "delay", "complaint", "auto_reply", "reply"};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

bool contains_any(std::string_view text, std::initializer_list<std::string_view> needles) {
  for (auto n : needles)
    if (core::icontains(text, n)) return true;
  return false;
}

// The lines of text, CRLF or LF, trailing CR removed.
std::vector<std::string_view> lines_of(std::string_view text, size_t max = 4000) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size() && out.size() < max) {
    size_t eol = text.find('\n', pos);
    std::string_view l = text.substr(pos, (eol == std::string_view::npos ? text.size() : eol) - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    out.push_back(l);
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  return out;
}

bool looks_like_address(std::string_view a) {
  size_t at = a.find('@');
  return at != std::string_view::npos && at > 0 && at + 1 < a.size() && a.size() <= 254 &&
         a.find_first_of(" \t<>()[],;:\"") == std::string_view::npos && a.find('@', at + 1) == std::string_view::npos;
}

// The first address-looking word in a line: "<bob@x>:", "bob@x", "Bob (bob@x)", "bob@x<mailto:bob@x>".
std::string first_address(std::string_view line) {
  size_t at = line.find('@');
  while (at != std::string_view::npos) {
    size_t start = line.find_last_of(" \t<>()[],;:\"'", at);
    start = start == std::string_view::npos ? 0 : start + 1;
    size_t end = line.find_first_of(" \t<>()[],;:\"'", at);
    std::string_view a = line.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    while (!a.empty() && a.back() == '.') a.remove_suffix(1);
    if (core::istarts_with(a, "mailto:")) a.remove_prefix(7);
    if (looks_like_address(a)) return std::string(a);
    at = line.find('@', at + 1);
  }
  return {};
}

// A status for a notice that gives none: what the words say, else the SMTP code's class.
std::string infer_status(std::string_view diagnostic, bool permanent) {
  if (std::string s = status_in(diagnostic); !s.empty()) return s;
  if (contains_any(diagnostic, {"user unknown", "unknown user", "no such user", "does not exist", "doesn't exist",
                                "doesn't have a", "address not found", "no mailbox here", "recipient not found",
                                "recipnotfound", "invalid recipient", "no such mailbox", "not a valid mailbox",
                                "couldn't be found", "unknown recipient", "unrouteable address"}))
    return permanent ? "5.1.1" : "4.1.1";
  if (contains_any(diagnostic, {"couldn't find any host", "host not found", "domain not found", "no mx"}))
    return permanent ? "5.1.2" : "4.1.2";
  if (contains_any(diagnostic, {"mailbox is disabled", "account is disabled", "account has been disabled",
                                "inactive", "account is suspended"}))
    return permanent ? "5.2.1" : "4.2.1";
  if (contains_any(diagnostic, {"over quota", "mailbox full", "mailbox is full", "quota exceeded", "insufficient storage"}))
    return permanent ? "5.2.2" : "4.2.2";
  return permanent ? "5.0.0" : "4.0.0";
}

void add_ids(std::vector<std::string>& to, std::vector<std::string> ids, bool newest_first = false) {
  if (newest_first) std::reverse(ids.begin(), ids.end());
  for (auto& id : ids)
    if (std::find(to.begin(), to.end(), id) == to.end() && to.size() < 64) to.push_back(std::move(id));
}

// "Message-ID:" lines in a text that quotes the returned message (qmail, Exim, Gmail bodies).
void quoted_message_ids(std::string_view text, const std::string& own, std::vector<std::string>& to) {
  for (auto line : lines_of(text)) {
    std::string_view l = trim(line);
    if (!core::istarts_with(l, "message-id:")) continue;
    for (auto& id : message_ids(l.substr(11), 4))
      if (id != own) add_ids(to, {id});
  }
}

bool is_returned_message(const ContentType& t) {
  return t.is("message", "rfc822") || t.is("text", "rfc822-headers") || t.is("message", "global") ||
         t.is("message", "global-headers");
}

const Part* first_part(const Message& m, std::string_view type, std::string_view subtype) {
  for (const auto& p : m.parts)
    if (p.type.is(type, subtype)) return &p;
  return nullptr;
}

// The text the notice is written in: the first text/plain leaf, else the first text/* one.
std::string_view notice_text(const Message& m) {
  if (const Part* p = first_part(m, "text", "plain")) return p->body;
  for (const auto& p : m.parts)
    if (p.type.type == "text" && !is_returned_message(p.type)) return p.body;
  return {};
}

void returned_headers(const Message& m, Signal& s, std::string* to_header = nullptr) {
  for (const auto& p : m.parts) {
    if (!is_returned_message(p.type)) continue;
    Headers h = parse_headers(p.body);
    add_ids(s.referenced_ids, message_ids(h.value("Message-ID"), 4));
    if (to_header && to_header->empty()) *to_header = address_in(h.value("To"));
  }
}

bool from_mailer_daemon(const Message& m) {
  std::string from = core::ascii_lowercase(address_in(m.headers.value("From")));
  std::string_view local = std::string_view(from).substr(0, from.find('@'));
  if (local == "mailer-daemon" || local == "postmaster" || local == "mailerdaemon" || local == "mail-daemon" ||
      local == "mailer_daemon")
    return true;
  return trim(m.headers.value("Return-Path")) == "<>";
}

bool bounce_subject(std::string_view subject) {
  return contains_any(subject, {"undelivered mail", "undeliverable", "delivery status notification", "mail delivery failed",
                                "failure notice", "returned mail", "delivery failure", "mail delivery failure",
                                "delivery has failed", "message not delivered", "nondeliverable", "non-deliverable",
                                "could not be delivered", "unzustellbar", "non remis", "non recapitabile",
                                "no se puede entregar", "delivery notification", "mail system error",
                                "warning: message", "delayed mail", "delivery delayed"});
}

// The notices large providers and old MTAs send without a delivery-status part. Each recogniser
// returns the recipients it found; an empty list means "not this format".
struct Notice {
  explicit Notice(std::string_view r) : rule(r) {}
  std::string_view rule;
  bool permanent = true;
  std::vector<SignalRecipient> recipients;
};

// qmail-send: "<bob@x>:" on a line of its own, the reason on the lines after, until an empty one.
Notice qmail_notice(const std::vector<std::string_view>& lines, std::string_view text) {
  Notice n("qmail");
  if (!core::icontains(text, "this is the qmail-send program")) return n;
  for (size_t i = 0; i < lines.size() && n.recipients.size() < kMaxDsnRecipients; ++i) {
    std::string_view l = trim(lines[i]);
    if (core::icontains(l, "below this line is a copy")) break;
    if (l.size() < 4 || l.front() != '<' || l.substr(l.size() - 2) != ">:") continue;
    std::string addr(l.substr(1, l.size() - 3));
    if (!looks_like_address(addr)) continue;
    std::string diag;
    for (size_t j = i + 1; j < lines.size() && !trim(lines[j]).empty() && diag.size() < 2000; ++j) {
      if (!diag.empty()) diag += ' ';
      diag += trim(lines[j]);
    }
    n.recipients.push_back({addr, DsnAction::Failed, infer_status(diag, true), diag, ""});
  }
  return n;
}

// Exim (and MTAs that copy it): "The following address(es) failed:" then indented addresses,
// each optionally followed by the remote server's answer; "has not yet been delivered" for a delay.
Notice exim_notice(const std::vector<std::string_view>& lines, std::string_view text) {
  Notice n("exim");
  bool delay = core::icontains(text, "has not yet been delivered") || core::icontains(text, "has been delayed");
  if (!core::icontains(text, "following address(es) failed") && !delay) return n;
  if (!core::icontains(text, "mail delivery software") && !core::icontains(text, "exim")) return n;
  n.permanent = !delay;
  bool in_list = false;
  for (size_t i = 0; i < lines.size() && n.recipients.size() < kMaxDsnRecipients; ++i) {
    std::string_view l = lines[i];
    std::string_view t = trim(l);
    if (core::icontains(t, "address(es) failed") || core::icontains(t, "address(es) deferred") ||
        core::icontains(t, "not yet been delivered to the following addresses") ||
        core::icontains(t, "not yet been delivered is:") || core::icontains(t, "not yet been delivered are:")) {
      in_list = true;
      continue;
    }
    if (!in_list) continue;
    if (core::icontains(t, "copy of the message") || core::icontains(t, "no action is required")) break;
    if (t.empty()) continue;
    bool indented = !l.empty() && (l.front() == ' ' || l.front() == '\t');
    std::string addr = first_address(t);
    // An address line is indented by two; its explanation further, and names the address again.
    bool address_line = indented && !addr.empty() && (t.front() == '<' || t.substr(0, addr.size()) == addr);
    if (address_line) {
      std::string diag;
      for (size_t j = i + 1; j < lines.size(); ++j) {
        std::string_view d = trim(lines[j]);
        if (d.empty()) {
          if (!diag.empty()) break;
          continue;
        }
        std::string next = first_address(d);
        if (!next.empty() && d.substr(0, next.size()) == next) break;
        if (core::icontains(d, "copy of the message")) break;
        if (diag.size() < 2000) {
          if (!diag.empty()) diag += ' ';
          diag += d;
        }
        i = j;
      }
      n.recipients.push_back({addr, n.permanent ? DsnAction::Failed : DsnAction::Delayed,
                              infer_status(diag, n.permanent), diag, ""});
    }
  }
  return n;
}

// The value after a label: the rest of the line, or the next non-empty line.
std::string after_label(const std::vector<std::string_view>& lines, size_t i, std::string_view label) {
  std::string_view l = trim(lines[i]);
  size_t at = core::irfind(l, label);
  std::string_view rest = at == std::string_view::npos ? std::string_view() : trim(l.substr(at + label.size()));
  if (!rest.empty()) return std::string(rest);
  for (size_t j = i + 1; j < lines.size() && j < i + 6; ++j)
    if (!trim(lines[j]).empty()) return std::string(trim(lines[j]));
  return {};
}

// A diagnostic under one of the labels, joined from the lines after it up to an empty one.
std::string diagnostic_after(const std::vector<std::string_view>& lines, std::initializer_list<std::string_view> labels) {
  for (auto label : labels) {  // the first label found wins, in the order given
    for (size_t i = 0; i < lines.size(); ++i) {
      if (!core::icontains(lines[i], label)) continue;
      std::string diag;
      std::string_view l = trim(lines[i]);
      std::string_view rest = trim(l.substr(core::irfind(l, label) + label.size()));
      if (!rest.empty()) diag = std::string(rest);
      for (size_t j = i + 1; j < lines.size() && diag.size() < 2000; ++j) {
        std::string_view d = trim(lines[j]);
        if (d.empty()) {
          if (diag.empty()) continue;
          break;
        }
        if (!diag.empty()) diag += ' ';
        diag += d;
      }
      return diag;
    }
  }
  return {};
}

// Gmail: "** Address not found **" … "Your message wasn't delivered to bob@x because …", and the
// older "Delivery to the following recipient failed permanently:"; "has been delayed" / "Delivery
// incomplete" for a delay. The server's answer follows "The response from the remote server was:"
// (or "Technical details of … failure:").
Notice gmail_notice(const std::vector<std::string_view>& lines, std::string_view text) {
  Notice n("gmail");
  bool delay = core::icontains(text, "delivery incomplete") ||
               core::icontains(text, "delivery to the following recipient has been delayed");
  bool fail = core::icontains(text, "wasn't delivered to") || core::icontains(text, "failed permanently") ||
              core::icontains(text, "address not found **") || core::icontains(text, "message blocked **");
  if (!delay && !fail) return n;
  n.permanent = fail;
  std::string diag = diagnostic_after(lines, {"the error that the other server returned was:",
                                              "the response from the remote server was:", "the response was:",
                                              "technical details of permanent failure:",
                                              "technical details of temporary failure:"});
  for (size_t i = 0; i < lines.size() && n.recipients.empty(); ++i) {
    std::string_view l = lines[i];
    std::string addr;
    if (core::icontains(l, "wasn't delivered to") || core::icontains(l, "there was a temporary problem delivering")) {
      // "… delivering your message to bob@x": the address follows the last " to ", when there is one.
      const size_t to = core::irfind(l, " to ");
      addr = first_address(to == std::string_view::npos ? l : l.substr(to));
    }
    else if (core::icontains(l, "following recipient failed permanently") ||
             core::icontains(l, "following recipient has been delayed"))
      addr = first_address(after_label(lines, i, ":"));
    if (!addr.empty())
      n.recipients.push_back({addr, n.permanent ? DsnAction::Failed : DsnAction::Delayed,
                              infer_status(diag.empty() ? text : std::string_view(diag), n.permanent), diag, ""});
  }
  return n;
}

// Microsoft Exchange / 365: "Delivery has failed to these recipients or groups:" then the
// recipient, or "Your message to bob@x couldn't be delivered."; the server's answer in
// "Remote Server returned '550 5.1.1 …'" or a "Diagnostic information for administrators" block.
Notice exchange_notice(const std::vector<std::string_view>& lines, std::string_view text) {
  Notice n("exchange");
  bool classic = core::icontains(text, "delivery has failed to these recipients or groups");
  bool modern = core::icontains(text, "couldn't be delivered") && core::icontains(text, "your message to");
  bool delay = core::icontains(text, "delivery is delayed to these recipients or groups");
  if (!classic && !modern && !delay) return n;
  n.permanent = !delay;
  std::string diag;
  for (auto l : lines) {
    size_t at = core::irfind(l, "remote server returned '");
    if (at == std::string_view::npos) at = core::irfind(l, "remote server returned \"");
    if (at != std::string_view::npos) {
      std::string_view rest = l.substr(at + 24);
      diag = std::string(rest.substr(0, rest.find_last_of("'\"")));
      break;
    }
  }
  // The classic form puts the server's answer on a line of its own: "#550 5.1.1 RESOLVER… ##".
  for (size_t i = 0; i < lines.size() && diag.empty(); ++i) {
    std::string_view t = trim(lines[i]);
    if (t.size() > 1 && t.front() == '#' && !status_in(t).empty()) {
      while (!t.empty() && (t.front() == '#' || t.front() == ' ')) t.remove_prefix(1);
      while (!t.empty() && (t.back() == '#' || t.back() == ' ')) t.remove_suffix(1);
      diag = std::string(t);
    }
  }
  for (size_t i = 0; i < lines.size() && n.recipients.size() < kMaxDsnRecipients; ++i) {
    std::string_view l = lines[i];
    if (core::icontains(l, "these recipients or groups")) {
      for (size_t j = i + 1; j < lines.size(); ++j) {
        std::string_view t = trim(lines[j]);
        if (t.empty()) {
          if (!n.recipients.empty()) break;
          continue;
        }
        std::string addr = first_address(t);
        if (addr.empty()) break;
        n.recipients.push_back({addr, n.permanent ? DsnAction::Failed : DsnAction::Delayed,
                                infer_status(diag.empty() ? t : std::string_view(diag), n.permanent), diag, ""});
        if (n.recipients.size() >= kMaxDsnRecipients) break;
      }
      break;
    }
    if (core::icontains(l, "your message to") && core::icontains(l, "couldn't be delivered")) {
      std::string addr = first_address(l);
      if (!addr.empty())
        n.recipients.push_back({addr, DsnAction::Failed, infer_status(diag.empty() ? text : std::string_view(diag), true),
                                diag, ""});
      break;
    }
  }
  return n;
}

// Yahoo: "Sorry, we were unable to deliver your message to the following address." then
// "<bob@x>:" and the server's answer on the next line.
Notice yahoo_notice(const std::vector<std::string_view>& lines, std::string_view text) {
  Notice n("yahoo");
  bool fail = core::icontains(text, "unable to deliver your message to the following address");
  bool delay = core::icontains(text, "message has not been delivered to the following address") ||
               core::icontains(text, "we are still trying to deliver");
  if (!fail && !delay) return n;
  n.permanent = fail;
  for (size_t i = 0; i < lines.size() && n.recipients.size() < kMaxDsnRecipients; ++i) {
    std::string_view t = trim(lines[i]);
    if (t.size() < 4 || t.front() != '<' || t.substr(t.size() - 2) != ">:") continue;
    std::string addr(t.substr(1, t.size() - 3));
    if (!looks_like_address(addr)) continue;
    std::string diag;
    for (size_t j = i + 1; j < lines.size() && !trim(lines[j]).empty() && diag.size() < 2000; ++j) {
      if (!diag.empty()) diag += ' ';
      diag += trim(lines[j]);
    }
    n.recipients.push_back({addr, n.permanent ? DsnAction::Failed : DsnAction::Delayed,
                            infer_status(diag, n.permanent), diag, ""});
  }
  return n;
}

// Any other notice from a mailer daemon: the recipients it names in X-Failed-Recipients, and the
// status its text gives.
Notice generic_notice(const Message& m, std::string_view text) {
  Notice n("failed_recipients_header");
  std::string_view failed = m.headers.value("X-Failed-Recipients");
  if (failed.empty()) return n;
  std::string diag = std::string(text.substr(0, std::min<size_t>(text.size(), 2000)));
  size_t pos = 0;
  while (pos < failed.size() && n.recipients.size() < kMaxDsnRecipients) {
    size_t comma = failed.find(',', pos);
    std::string a = address_in(failed.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    if (looks_like_address(a)) n.recipients.push_back({a, DsnAction::Failed, infer_status(text, true), "", ""});
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return n;
}

bool auto_reply_subject(std::string_view subject) {
  return contains_any(subject, {
                                   "out of office", "out of the office", "automatic reply", "auto reply", "autoreply",
                                   "auto-reply", "auto response", "autoresponse", "away from the office", "on vacation",
                                   "vacation reply", "abwesenheitsnotiz", "automatische antwort", "abwesend",
                                   "réponse automatique", "absence du bureau", "absent du bureau",
                                   "respuesta automática", "fuera de la oficina", "risposta automatica",
                                   "fuori sede", "fuori ufficio", "automatisch antwoord", "afwezig",
                                   "resposta automática", "fora do escritório", "autosvar", "frånvaro",
                                   "automatisk svar", "poza biurem", "odpowiedź automatyczna", "автоответ",
                                   "автоматический ответ", "自動応答", "不在", "自动回复",
                               });
}

void set_common(const Message& m, Signal& s) {
  auto own = message_ids(m.headers.value("Message-ID"), 1);
  if (!own.empty()) s.message_id = own.front();
  s.date = std::string(m.headers.value("Date"));
  s.from = address_in(m.headers.value("From"));
  s.subject = decode_words(m.headers.value("Subject"));
  core::truncate_utf8(s.subject, 998);
}

void add_thread_ids(const Message& m, Signal& s) {
  add_ids(s.referenced_ids, message_ids(m.headers.value("In-Reply-To"), 8));
  add_ids(s.referenced_ids, message_ids(m.headers.value("References"), 64), true);
}

}  // namespace

std::string_view to_string(SignalKind k) { return kKindNames[static_cast<size_t>(k)]; }

Signal classify(const Message& m) {
  Signal s;
  set_common(m, s);

  // 1. An ARF complaint.
  if (const Part* fr = first_part(m, "message", "feedback-report")) {
    auto report = parse_feedback_report(fr->body);
    if (!report) {
      s.error = "feedback report: " + report.error();
      return s;
    }
    s.kind = SignalKind::Complaint;
    s.rule = "arf";
    s.feedback_type = report->feedback_type;
    std::string to_header;
    returned_headers(m, s, &to_header);
    std::string who = !report->original_rcpt_to.empty() ? report->original_rcpt_to : to_header;
    if (!who.empty()) s.recipients.push_back({who, DsnAction::Unknown, "", "", ""});
    return s;
  }

  // 2. A DSN (RFC 3464, RFC 6533).
  const Part* ds = first_part(m, "message", "delivery-status");
  bool global = false;
  if (!ds) {
    ds = first_part(m, "message", "global-delivery-status");
    global = ds != nullptr;
  }
  if (ds) {
    auto parsed = parse_delivery_status(ds->body);
    if (!parsed) {
      s.error = "delivery status: " + parsed.error();
      return s;
    }
    s.rule = global ? "rfc6533" : "rfc3464";
    bool any_failed = false, any_delayed = false;
    for (const auto& r : parsed->recipients) {
      any_failed |= r.action == DsnAction::Failed;
      any_delayed |= r.action == DsnAction::Delayed;
    }
    // A DSN for delivered / relayed / expanded recipients reports success: nothing to do.
    if (any_failed || any_delayed) {
      s.kind = any_failed ? SignalKind::Bounce : SignalKind::Delay;
      DsnAction wanted = any_failed ? DsnAction::Failed : DsnAction::Delayed;
      for (const auto& r : parsed->recipients) {
        if (r.action != wanted) continue;
        std::string status = r.status.empty() ? infer_status(r.diagnostic, any_failed) : r.status;
        s.recipients.push_back({r.final_recipient, r.action, status, r.diagnostic, r.remote_mta});
      }
      returned_headers(m, s);
      quoted_message_ids(notice_text(m), s.message_id, s.referenced_ids);
    }
    return s;
  }

  // 3. A plain-text notice from a mailer daemon.
  if (from_mailer_daemon(m) || bounce_subject(s.subject) || m.headers.has("X-Failed-Recipients")) {
    std::string_view text = notice_text(m);
    auto lines = lines_of(text);
    Notice n = qmail_notice(lines, text);
    if (n.recipients.empty()) n = exim_notice(lines, text);
    if (n.recipients.empty()) n = gmail_notice(lines, text);
    if (n.recipients.empty()) n = exchange_notice(lines, text);
    if (n.recipients.empty()) n = yahoo_notice(lines, text);
    if (n.recipients.empty()) n = generic_notice(m, text);
    if (!n.recipients.empty()) {
      s.kind = n.permanent ? SignalKind::Bounce : SignalKind::Delay;
      s.rule = n.rule;
      s.recipients = std::move(n.recipients);
      returned_headers(m, s);
      for (const auto& p : m.parts)
        if (p.type.type == "text") quoted_message_ids(p.body, s.message_id, s.referenced_ids);
      return s;
    }
    if (from_mailer_daemon(m)) {
      s.rule = "mailer_daemon_unparsed";  // a notice in a format not known here: logged, not acted on
      return s;
    }
  }

  // 4. An automatic reply.
  std::string_view auto_submitted = trim(m.headers.value("Auto-Submitted"));
  std::string precedence = core::ascii_lowercase(trim(m.headers.value("Precedence")));
  std::string_view rule;
  if (!auto_submitted.empty() && !core::istarts_with(auto_submitted, "no")) rule = "auto_submitted";
  else if (m.headers.has("X-Autoreply") || m.headers.has("X-Autorespond") || m.headers.has("X-Autoresponder"))
    rule = "x_autoreply";
  else if (precedence == "auto_reply" || precedence == "bulk" || precedence == "junk")
    rule = "precedence";
  else if (auto_reply_subject(s.subject))
    rule = "subject";
  if (!rule.empty()) {
    s.kind = SignalKind::AutoReply;
    s.rule = rule;
    if (!s.from.empty()) s.recipients.push_back({s.from, DsnAction::Unknown, "", "", ""});
    add_thread_ids(m, s);
    return s;
  }

  // 5. A reply: a message that names earlier ones. Correlation decides whether they were ours.
  add_thread_ids(m, s);
  if (!s.referenced_ids.empty()) {
    s.kind = SignalKind::Reply;
    s.rule = "threaded";
    if (!s.from.empty()) s.recipients.push_back({s.from, DsnAction::Unknown, "", "", ""});
  }
  return s;
}

}  // namespace deliverd::inbound
