#include "inbound/imap_parser.h"

#include <algorithm>
#include <array>

#include "core/ascii.h"

namespace deliverd::inbound {
namespace {

constexpr std::array<std::string_view, 6> kErrorNames = {"literal_too_large", "response_too_large", "line_too_long",
                                                         "too_deep",          "too_many_values",    "syntax"};
constexpr std::array<std::string_view, 6> kConditionNames = {"", "OK", "NO", "BAD", "PREAUTH", "BYE"};

struct CodeName {
  Code code;
  std::string_view name;
};
constexpr CodeName kCodeNames[] = {
    {Code::None, ""},
    {Code::Alert, "ALERT"},
    {Code::Capability, "CAPABILITY"},
    {Code::UidValidity, "UIDVALIDITY"},
    {Code::UidNext, "UIDNEXT"},
    {Code::Unseen, "UNSEEN"},
    {Code::PermanentFlags, "PERMANENTFLAGS"},
    {Code::ReadOnly, "READ-ONLY"},
    {Code::ReadWrite, "READ-WRITE"},
    {Code::TryCreate, "TRYCREATE"},
    {Code::Parse, "PARSE"},
    {Code::BadCharset, "BADCHARSET"},
    {Code::AppendUid, "APPENDUID"},
    {Code::CopyUid, "COPYUID"},
    {Code::UidNotSticky, "UIDNOTSTICKY"},
    {Code::HighestModSeq, "HIGHESTMODSEQ"},
    {Code::Closed, "CLOSED"},
    {Code::Unavailable, "UNAVAILABLE"},
    {Code::AuthenticationFailed, "AUTHENTICATIONFAILED"},
    {Code::AuthorizationFailed, "AUTHORIZATIONFAILED"},
    {Code::Expired, "EXPIRED"},
    {Code::PrivacyRequired, "PRIVACYREQUIRED"},
    {Code::ContactAdmin, "CONTACTADMIN"},
    {Code::NoPerm, "NOPERM"},
    {Code::InUse, "INUSE"},
    {Code::ExpungeIssued, "EXPUNGEISSUED"},
    {Code::Corruption, "CORRUPTION"},
    {Code::ServerBug, "SERVERBUG"},
    {Code::ClientBug, "CLIENTBUG"},
    {Code::CannotSet, "CANNOT"},
    {Code::Limit, "LIMIT"},
    {Code::OverQuota, "OVERQUOTA"},
    {Code::AlreadyExists, "ALREADYEXISTS"},
    {Code::NonExistent, "NONEXISTENT"},
    {Code::Other, "OTHER"},
};

Code code_from_name(std::string_view upper_name) {
  for (const auto& c : kCodeNames)
    if (c.code != Code::None && c.code != Code::Other && c.name == upper_name) return c.code;
  return Code::Other;
}

// Reads one complete response. Failures are sticky: after the first, every read returns an
// empty value and every loop ends, so the caller checks ok() once at the end.
class Reader {
 public:
  Reader(std::string_view in, const ParserLimits& limits) : in_(in), limits_(limits) {}

  bool ok() const { return !error_; }
  ParseError take_error() { return std::move(*error_); }

  void fail(ParseErrorKind kind, std::string what) {
    if (error_) return;
    std::string near(in_.substr(pos_, 24));
    for (char& c : near)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '.';
    error_ =
        ParseError{kind, what + " at byte " + std::to_string(pos_) + (near.empty() ? "" : " near \"" + near + "\"")};
  }

  bool at_end() const { return pos_ >= in_.size(); }
  char peek() const { return ok() && pos_ < in_.size() ? in_[pos_] : '\0'; }
  bool at_crlf() const { return ok() && in_.substr(pos_, 2) == "\r\n"; }
  bool eat(char c) {
    if (peek() != c || at_end()) return false;
    ++pos_;
    return true;
  }
  void expect(char c, const char* what) {
    if (!eat(c)) fail(ParseErrorKind::Syntax, std::string("expected ") + what);
  }
  // Servers differ in spacing (some send two spaces, some none before ")"): one or more.
  bool eat_sp() {
    if (!eat(' ')) return false;
    while (eat(' ')) {
    }
    return true;
  }
  void expect_sp() {
    if (!eat_sp()) fail(ParseErrorKind::Syntax, "expected a space");
  }
  void expect_crlf() {
    eat_sp();  // trailing space before CRLF: tolerated
    if (!at_crlf()) return fail(ParseErrorKind::Syntax, "expected the end of the response");
    pos_ += 2;
    if (pos_ != in_.size()) fail(ParseErrorKind::Syntax, "bytes after the end of the response");
  }

  // Atom characters (RFC 3501 ATOM-CHAR, with "\" and the list wildcards let through for flags and
  // mailbox patterns); "]" ends an atom, and "[" does too when bracket is set (FETCH item names).
  static bool atom_char(char c, bool bracket) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
    if (c == '(' || c == ')' || c == '{' || c == '"' || c == ']') return false;
    return !(bracket && c == '[');
  }
  std::string atom(bool bracket = false) {
    size_t start = pos_;
    while (ok() && pos_ < in_.size() && atom_char(in_[pos_], bracket)) ++pos_;
    if (ok() && pos_ == start) fail(ParseErrorKind::Syntax, "expected an atom");
    return ok() ? std::string(in_.substr(start, pos_ - start)) : std::string();
  }

  uint64_t number() {
    size_t start = pos_;
    uint64_t n = 0;
    while (ok() && pos_ < in_.size() && core::ascii_is_digit(in_[pos_])) {
      auto d = static_cast<uint64_t>(in_[pos_] - '0');
      if (n > (UINT64_MAX - d) / 10) {
        fail(ParseErrorKind::Syntax, "number too large");
        return 0;
      }
      n = n * 10 + d;
      ++pos_;
    }
    if (ok() && pos_ == start) fail(ParseErrorKind::Syntax, "expected a number");
    return ok() ? n : 0;
  }
  uint32_t number32() {
    uint64_t n = number();
    if (n > UINT32_MAX) fail(ParseErrorKind::Syntax, "number too large for 32 bits");
    return ok() ? static_cast<uint32_t>(n) : 0;
  }

  std::string quoted() {
    std::string out;
    expect('"', "a quoted string");
    while (ok()) {
      if (at_end()) {
        fail(ParseErrorKind::Syntax, "unterminated quoted string");
        break;
      }
      char c = in_[pos_++];
      if (c == '"') break;
      if (c == '\r' || c == '\n') {
        --pos_;
        fail(ParseErrorKind::Syntax, "line break in a quoted string");
        break;
      }
      if (c == '\\') {
        if (at_end()) continue;
        c = in_[pos_++];
      }
      out += c;
    }
    return ok() ? out : std::string();
  }

  // {n}CRLF, {n+}CRLF (LITERAL+), ~{n}CRLF (literal8), then n bytes. The framer has checked the
  // bounds; here n is only held against what is there.
  std::string literal() {
    eat('~');
    expect('{', "a literal");
    uint64_t n = number();
    eat('+');
    expect('}', "\"}\" after the literal's length");
    if (ok() && !at_crlf()) fail(ParseErrorKind::Syntax, "expected CRLF after the literal's length");
    if (!ok()) return {};
    pos_ += 2;
    if (n > in_.size() - pos_) {
      fail(ParseErrorKind::Syntax, "literal longer than the response");
      return {};
    }
    std::string out(in_.substr(pos_, static_cast<size_t>(n)));
    pos_ += static_cast<size_t>(n);
    return out;
  }

  bool at_string() const { return peek() == '"' || peek() == '{' || (peek() == '~' && peek_at(1) == '{'); }
  char peek_at(size_t off) const { return pos_ + off < in_.size() ? in_[pos_ + off] : '\0'; }
  std::string string() { return peek() == '"' ? quoted() : literal(); }

  // NIL or a string.
  std::optional<std::string> nstring() {
    if (at_string()) return string();
    std::string a = atom();
    if (ok() && !core::iequals(a, "NIL")) fail(ParseErrorKind::Syntax, "expected a string or NIL");
    return std::nullopt;
  }

  void count_value() {
    if (++values_ > limits_.max_values)
      fail(ParseErrorKind::TooManyValues,
           "more than " + std::to_string(limits_.max_values) + " values (max_values) in one response");
  }

  Value value(size_t depth) {
    Value v;
    count_value();
    if (!ok()) return v;
    char c = peek();
    if (c == '(') {
      if (depth + 1 > limits_.max_depth) {
        fail(ParseErrorKind::TooDeep, "lists nested deeper than " + std::to_string(limits_.max_depth) + " (max_depth)");
        return v;
      }
      ++pos_;
      v.type = Value::Type::List;
      eat_sp();
      while (ok() && !eat(')')) {
        if (at_end() || at_crlf()) {
          fail(ParseErrorKind::Syntax, "unterminated list");
          break;
        }
        v.items.push_back(value(depth + 1));
        // body-type-mpart is 1*body: parts follow each other without a space.
        if (peek() != ')' && peek() != '(') expect_sp();
      }
      return v;
    }
    if (at_string()) {
      v.type = Value::Type::String;
      v.text = string();
      return v;
    }
    if (core::ascii_is_digit(c)) {
      size_t start = pos_;
      std::string a = atom();
      if (std::all_of(a.begin(), a.end(), core::ascii_is_digit)) {
        pos_ = start;
        v.type = Value::Type::Number;
        v.number = number();
        v.text = std::move(a);
        return v;
      }
      v.type = Value::Type::Atom;
      v.text = std::move(a);
      return v;
    }
    std::string a = atom();
    if (core::iequals(a, "NIL")) return v;
    v.type = Value::Type::Atom;
    v.text = std::move(a);
    return v;
  }

  // Up to CRLF, not consuming it.
  std::string rest_of_line() {
    size_t end = in_.find("\r\n", pos_);
    if (end == std::string_view::npos) end = in_.size();
    std::string out(in_.substr(pos_, end - pos_));
    pos_ = end;
    return out;
  }

  // Up to "]" (not consuming it), keeping what is inside quoted strings intact.
  std::string until_bracket() {
    size_t start = pos_;
    while (ok() && pos_ < in_.size() && in_[pos_] != ']' && !at_crlf()) {
      if (in_[pos_] == '"') {
        quoted();
        continue;
      }
      ++pos_;
    }
    return std::string(in_.substr(start, pos_ - start));
  }

  std::string_view input() const { return in_; }
  size_t pos() const { return pos_; }

 private:
  std::string_view in_;
  const ParserLimits& limits_;
  size_t pos_ = 0;
  size_t values_ = 0;
  std::optional<ParseError> error_;
};

std::string value_text(const Value& v) { return v.type == Value::Type::Nil ? std::string() : v.text; }
uint64_t value_number(const Value& v) { return v.type == Value::Type::Number ? v.number : 0; }

// ("name" "value" …) or NIL.
std::vector<std::pair<std::string, std::string>> param_list(const Value& v) {
  std::vector<std::pair<std::string, std::string>> out;
  if (v.type != Value::Type::List) return out;
  for (size_t i = 0; i + 1 < v.items.size(); i += 2)
    out.emplace_back(core::ascii_lowercase(value_text(v.items[i])), value_text(v.items[i + 1]));
  return out;
}

void read_disposition(const Value& v, BodyPart& part) {
  if (v.type != Value::Type::List || v.items.empty()) return;
  part.disposition = core::ascii_lowercase(value_text(v.items[0]));
  if (v.items.size() > 1) part.disposition_params = param_list(v.items[1]);
}

// The generic tree is bounded by max_depth, and so is this recursion.
core::Result<BodyPart, ParseError> interpret_body(const Value& v) {
  if (v.type != Value::Type::List || v.items.empty())
    return core::Err{ParseError{ParseErrorKind::Syntax, "a body structure must be a non-empty list"}};
  BodyPart part;
  const auto& it = v.items;
  size_t i = 0;
  if (it[0].type == Value::Type::List) {
    part.type = "multipart";
    for (; i < it.size() && it[i].type == Value::Type::List; ++i) {
      auto child = interpret_body(it[i]);
      if (!child) return child;
      part.parts.push_back(std::move(child).value());
    }
    if (i < it.size()) part.subtype = core::ascii_lowercase(value_text(it[i++]));
    if (i < it.size()) part.params = param_list(it[i++]);  // body-ext-mpart
    if (i < it.size()) read_disposition(it[i++], part);
    return part;  // language, location and extensions: tolerated, not kept
  }
  auto at = [&](size_t k) -> const Value* { return k < it.size() ? &it[k] : nullptr; };
  part.type = core::ascii_lowercase(value_text(it[0]));
  if (auto* x = at(1)) part.subtype = core::ascii_lowercase(value_text(*x));
  if (auto* x = at(2)) part.params = param_list(*x);
  if (auto* x = at(3)) part.id = value_text(*x);
  if (auto* x = at(4)) part.description = value_text(*x);
  if (auto* x = at(5)) part.encoding = core::ascii_lowercase(value_text(*x));
  if (auto* x = at(6)) part.size = value_number(*x);
  i = 7;
  if (part.type == "text") {
    if (auto* x = at(i++)) part.lines = value_number(*x);
  } else if (part.type == "message" && (part.subtype == "rfc822" || part.subtype == "global")) {
    // envelope, body, lines; some servers send a short form, so each is optional.
    if (at(i + 1) && it[i + 1].type == Value::Type::List) {
      auto inner = interpret_body(it[i + 1]);
      if (!inner) return inner;
      part.parts.push_back(std::move(inner).value());
      if (auto* x = at(i + 2)) part.lines = value_number(*x);
      i += 3;
    }
  }
  ++i;  // body-fld-md5
  if (auto* x = at(i)) read_disposition(*x, part);
  return part;
}

// RFC 3501 §6.4.5: the parts of a multipart are numbered 1, 2, … below their parent's number; a
// message/rfc822 part's encapsulated body counts as its child.
void number_sections(BodyPart& part, const std::string& number) {
  if (part.multipart()) {
    part.section = number;
    for (size_t i = 0; i < part.parts.size(); ++i)
      number_sections(part.parts[i], number.empty() ? std::to_string(i + 1) : number + "." + std::to_string(i + 1));
    return;
  }
  part.section = number.empty() ? "1" : number;
  for (auto& inner : part.parts) number_sections(inner, inner.multipart() ? part.section : part.section + ".1");
}

void read_code(Reader& r, ResponseCode& code) {
  code.name = core::ascii_uppercase(r.atom());
  code.code = code_from_name(code.name);
  if (r.ok() && r.eat_sp()) {
    size_t start = r.pos();
    switch (code.code) {
      case Code::Capability:
        while (r.ok() && r.peek() != ']' && !r.at_end()) {
          code.args.push_back(core::ascii_uppercase(r.atom()));
          r.eat_sp();
        }
        break;
      case Code::UidValidity:
      case Code::UidNext:
      case Code::Unseen:
      case Code::HighestModSeq:
        code.number = r.number();
        break;
      case Code::PermanentFlags:
      case Code::BadCharset:
        if (r.peek() == '(') {
          Value v = r.value(1);
          for (const auto& item : v.items) code.args.push_back(value_text(item));
        }
        break;
      case Code::AppendUid:
      case Code::CopyUid:
        code.number = r.number();
        while (r.ok() && r.eat_sp() && r.peek() != ']') code.args.push_back(r.atom());
        break;
      default:
        break;
    }
    r.until_bracket();
    if (r.ok()) code.raw = std::string(r.input().substr(start, r.pos() - start));
  }
  r.expect(']', "\"]\" after the response code");
}

// [SP] ["[" code "]" SP] text, up to CRLF.
void read_resp_text(Reader& r, Response& out) {
  if (!r.eat_sp()) return;
  if (r.eat('[')) {
    read_code(r, out.code);
    r.eat_sp();
  }
  out.text = r.rest_of_line();
}

std::optional<Condition> condition_from(std::string_view upper_word) {
  for (size_t i = 1; i < kConditionNames.size(); ++i)
    if (kConditionNames[i] == upper_word) return static_cast<Condition>(i);
  return std::nullopt;
}

// 1:3,5,9:7 — ranges kept as sent, each normalised low-high.
std::vector<std::pair<uint32_t, uint32_t>> sequence_set(Reader& r) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  do {
    uint32_t a = r.number32();
    uint32_t b = a;
    if (r.eat(':')) b = r.number32();
    if (!r.ok()) break;
    out.emplace_back(std::min(a, b), std::max(a, b));
    r.count_value();
  } while (r.ok() && r.eat(','));
  return out;
}

void read_esearch(Reader& r, ESearchData& es) {
  if (!r.eat_sp()) return;
  if (r.eat('(')) {  // search-correlator: (TAG "a5")
    std::string key = core::ascii_uppercase(r.atom());
    r.expect_sp();
    es.tag = r.string();
    r.expect(')', "\")\" after the search correlator");
    if (key != "TAG") r.fail(ParseErrorKind::Syntax, "expected TAG in the search correlator");
    if (!r.eat_sp()) return;
  }
  while (r.ok() && !r.at_crlf() && !r.at_end()) {
    std::string key = core::ascii_uppercase(r.atom());
    if (key == "UID") {
      es.uid = true;
    } else {
      r.expect_sp();
      if (key == "MIN") {
        es.min = r.number32();
      } else if (key == "MAX") {
        es.max = r.number32();
      } else if (key == "COUNT") {
        es.count = r.number();
      } else if (key == "ALL") {
        es.all = sequence_set(r);
      } else {
        r.value(0);  // MODSEQ and extensions
      }
    }
    if (!r.eat_sp()) break;
  }
}

// BODY[section]<origin>: the name read so far is BODY or BINARY; the section and origin follow.
void read_section(Reader& r, BodySection& s) {
  size_t start = r.pos();
  int parens = 0;
  while (r.ok() && !r.at_end() && !r.at_crlf()) {
    char c = r.peek();
    if (c == '"') {
      r.quoted();
      continue;
    }
    if (c == '(') ++parens;
    if (c == ')') --parens;
    if (c == ']' && parens <= 0) break;
    r.eat(c);
  }
  s.section = std::string(r.input().substr(start, r.pos() - start));
  r.expect(']', "\"]\" after the section");
  if (r.eat('<')) {
    s.origin = r.number32();
    r.expect('>', "\">\" after the origin");
  }
}

void read_fetch(Reader& r, FetchData& f) {
  r.expect('(', "\"(\" before the FETCH items");
  r.eat_sp();
  while (r.ok() && !r.eat(')')) {
    if (r.at_end() || r.at_crlf()) return r.fail(ParseErrorKind::Syntax, "unterminated FETCH items");
    std::string name = core::ascii_uppercase(r.atom(true));
    if (!r.ok()) return;
    if ((name == "BODY" || name == "BINARY") && r.eat('[')) {
      BodySection s;
      s.binary = name == "BINARY";
      read_section(r, s);
      r.expect_sp();
      s.data = r.nstring();
      f.sections.push_back(std::move(s));
    } else if (name == "BINARY.SIZE" && r.eat('[')) {
      BodySection ignored;
      read_section(r, ignored);
      r.expect_sp();
      r.value(0);
    } else {
      r.expect_sp();
      if (name == "UID") {
        f.uid = r.number32();
      } else if (name == "FLAGS") {
        Value v = r.value(0);
        if (v.type != Value::Type::List) r.fail(ParseErrorKind::Syntax, "FLAGS must be a list");
        std::vector<std::string> flags;
        for (auto& item : v.items) flags.push_back(value_text(item));
        f.flags = std::move(flags);
      } else if (name == "RFC822.SIZE") {
        f.rfc822_size = r.number();
      } else if (name == "INTERNALDATE") {
        f.internal_date = r.nstring();
      } else if (name == "BODYSTRUCTURE" || name == "BODY") {
        Value v = r.value(0);
        if (!r.ok()) return;
        auto b = body_structure_from(v);
        if (!b) return r.fail(b.error().kind, name + ": " + b.error().detail);
        f.body_structure = std::move(b).value();
      } else if (name == "RFC822" || name == "RFC822.HEADER" || name == "RFC822.TEXT") {
        BodySection s;
        s.section = name == "RFC822" ? "" : name.substr(7);
        s.data = r.nstring();
        f.sections.push_back(std::move(s));
      } else if (name == "MODSEQ") {
        Value v = r.value(0);
        if (v.type == Value::Type::List && !v.items.empty()) f.modseq = value_number(v.items[0]);
      } else {
        r.value(0);  // ENVELOPE, X-GM-*, EMAILID, PREVIEW, …: not ours to read
      }
    }
    if (r.peek() != ')') r.expect_sp();
  }
}

void read_untagged(Reader& r, Response& out) {
  if (core::ascii_is_digit(r.peek())) {
    out.number = r.number();
    r.expect_sp();
    std::string name = core::ascii_uppercase(r.atom());
    if (!r.ok()) return;
    if (name == "EXISTS") {
      out.data = DataKind::Exists;
    } else if (name == "RECENT") {
      out.data = DataKind::Recent;
    } else if (name == "EXPUNGE") {
      out.data = DataKind::Expunge;
    } else if (name == "FETCH") {
      out.data = DataKind::Fetch;
      if (out.number == 0 || out.number > UINT32_MAX)
        return r.fail(ParseErrorKind::Syntax, "bad FETCH sequence number");
      out.fetch.seq = static_cast<uint32_t>(out.number);
      r.expect_sp();
      read_fetch(r, out.fetch);
    } else {
      out.data = DataKind::Other;
      out.name = name;
      while (r.ok() && r.eat_sp() && !r.at_crlf()) out.values.push_back(r.value(0));
    }
    return;
  }
  std::string name = core::ascii_uppercase(r.atom());
  if (!r.ok()) return;
  if (auto c = condition_from(name)) {
    out.data = DataKind::Status;
    out.condition = *c;
    return read_resp_text(r, out);
  }
  if (name == "CAPABILITY" || name == "ENABLED") {
    out.data = name == "CAPABILITY" ? DataKind::Capability : DataKind::Enabled;
    while (r.ok() && r.eat_sp() && !r.at_crlf()) out.atoms.push_back(core::ascii_uppercase(r.atom()));
  } else if (name == "FLAGS") {
    out.data = DataKind::Flags;
    r.expect_sp();
    Value v = r.value(0);
    for (auto& item : v.items) out.atoms.push_back(value_text(item));
  } else if (name == "SEARCH") {
    out.data = DataKind::Search;
    while (r.ok() && r.eat_sp() && !r.at_crlf()) {
      if (r.peek() == '(') {  // CONDSTORE's (MODSEQ n)
        r.value(0);
        continue;
      }
      out.numbers.push_back(r.number32());
    }
  } else if (name == "ESEARCH") {
    out.data = DataKind::ESearch;
    read_esearch(r, out.esearch);
  } else {
    out.data = DataKind::Other;
    out.name = name;
    while (r.ok() && r.eat_sp() && !r.at_crlf()) out.values.push_back(r.value(0));
  }
}

}  // namespace

std::string_view to_string(ParseErrorKind k) { return kErrorNames[static_cast<size_t>(k)]; }
std::string_view to_string(Condition c) { return kConditionNames[static_cast<size_t>(c)]; }
std::string_view to_string(Code c) {
  for (const auto& n : kCodeNames)
    if (n.code == c) return n.name;
  return "OTHER";
}

std::string_view BodyPart::param(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (core::iequals(k, name)) return v;
  return {};
}

const BodySection* FetchData::section(std::string_view name) const {
  for (const auto& s : sections)
    if (core::iequals(s.section, name)) return &s;
  return nullptr;
}

bool FetchData::has_flag(std::string_view flag) const {
  if (!flags) return false;
  return std::any_of(flags->begin(), flags->end(), [&](const std::string& f) { return core::iequals(f, flag); });
}

core::Result<BodyPart, ParseError> body_structure_from(const Value& v) {
  auto b = interpret_body(v);
  if (!b) return b;
  BodyPart part = std::move(b).value();
  number_sections(part, "");
  return part;
}

core::Result<Response, ParseError> parse_response(std::string_view wire, const ParserLimits& limits) {
  Reader r(wire, limits);
  Response out;
  out.wire_bytes = wire.size();
  if (r.eat('+')) {
    out.kind = ResponseKind::Continuation;
    r.eat(' ');
    out.text = r.rest_of_line();
  } else if (r.eat('*')) {
    out.kind = ResponseKind::Untagged;
    r.expect(' ', "a space after \"*\"");
    read_untagged(r, out);
  } else {
    out.kind = ResponseKind::Tagged;
    out.tag = r.atom();
    if (r.ok() && out.tag.find('+') != std::string::npos) r.fail(ParseErrorKind::Syntax, "\"+\" in a tag");
    r.expect_sp();
    std::string word = core::ascii_uppercase(r.atom());
    auto c = condition_from(word);
    if (r.ok() && (!c || *c == Condition::Preauth || *c == Condition::Bye))
      r.fail(ParseErrorKind::Syntax, "a tagged response must be OK, NO or BAD");
    if (c) out.condition = *c;
    read_resp_text(r, out);
  }
  r.expect_crlf();
  if (!r.ok()) return core::Err{r.take_error()};
  return out;
}

void ResponseParser::feed(std::string_view bytes) {
  if (error_) return;
  // Drop what earlier responses used before the buffer grows again.
  if (start_ > 0 && (start_ == buf_.size() || start_ > 64 * 1024)) {
    buf_.erase(0, start_);
    scan_ -= start_;
    line_start_ -= start_;
    start_ = 0;
  }
  buf_.append(bytes);
}

core::Result<std::optional<Response>, ParseError> ResponseParser::fail(ParseErrorKind kind, std::string detail) {
  error_ = ParseError{kind, std::move(detail)};
  buf_.clear();
  start_ = scan_ = line_start_ = 0;
  literal_left_ = 0;
  return core::Err{*error_};
}

core::Result<std::optional<Response>, ParseError> ResponseParser::next() {
  if (error_) return core::Err{*error_};
  for (;;) {
    if (literal_left_ > 0) {
      size_t avail = buf_.size() - scan_;
      if (avail < literal_left_) {
        literal_left_ -= avail;
        scan_ = buf_.size();
        return std::optional<Response>{};
      }
      scan_ += literal_left_;
      literal_left_ = 0;
      line_start_ = scan_;
    }
    size_t eol = buf_.find("\r\n", scan_);
    if (eol == std::string::npos) {
      if (buf_.size() - line_start_ > limits_.max_line + 1)
        return fail(ParseErrorKind::LineTooLong,
                    "a response line exceeds " + std::to_string(limits_.max_line) + " bytes (max_line)");
      if (buf_.size() - start_ > limits_.max_response)
        return fail(ParseErrorKind::ResponseTooLarge,
                    "a response exceeds " + std::to_string(limits_.max_response) + " bytes (max_response)");
      // A CR at the very end may be the first half of the line ending: look at it again.
      scan_ = buf_.empty() ? 0 : std::max(scan_, buf_.size() - 1);
      return std::optional<Response>{};
    }
    if (eol - line_start_ > limits_.max_line)
      return fail(ParseErrorKind::LineTooLong,
                  "a response line exceeds " + std::to_string(limits_.max_line) + " bytes (max_line)");
    size_t total = eol + 2 - start_;
    if (total > limits_.max_response)
      return fail(ParseErrorKind::ResponseTooLarge,
                  "a response exceeds " + std::to_string(limits_.max_response) + " bytes (max_response)");
    // A line that ends in {n}, {n+} or ~{n} announces n bytes that belong to this response.
    std::string_view line(buf_.data() + line_start_, eol - line_start_);
    if (!line.empty() && line.back() == '}') {
      size_t open = line.rfind('{');
      std::string_view digits =
          open == std::string_view::npos ? std::string_view() : line.substr(open + 1, line.size() - open - 2);
      if (!digits.empty() && digits.back() == '+') digits.remove_suffix(1);
      if (!digits.empty() && std::all_of(digits.begin(), digits.end(), core::ascii_is_digit)) {
        uint64_t n = 0;
        bool huge = digits.size() > 19;
        for (char c : digits) n = huge ? n : n * 10 + static_cast<uint64_t>(c - '0');
        if (huge || n > limits_.max_literal)
          return fail(ParseErrorKind::LiteralTooLarge,
                      "a literal of " + (huge ? std::string(digits.substr(0, 24)) : std::to_string(n)) +
                          " bytes exceeds " + std::to_string(limits_.max_literal) + " (max_literal)");
        if (total + n > limits_.max_response)
          return fail(ParseErrorKind::ResponseTooLarge,
                      "a literal of " + std::to_string(n) + " bytes takes the response past " +
                          std::to_string(limits_.max_response) + " bytes (max_response)");
        scan_ = eol + 2;
        line_start_ = scan_;
        literal_left_ = static_cast<size_t>(n);
        continue;
      }
    }
    std::string_view wire(buf_.data() + start_, total);
    auto parsed = parse_response(wire, limits_);
    start_ = eol + 2;
    scan_ = line_start_ = start_;
    if (!parsed) return fail(parsed.error().kind, parsed.error().detail);
    return std::optional<Response>(std::move(parsed).value());
  }
}

void ResponseParser::reset() {
  buf_.clear();
  start_ = scan_ = line_start_ = 0;
  literal_left_ = 0;
  error_.reset();
}

}  // namespace deliverd::inbound
