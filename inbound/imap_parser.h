#pragma once
// Incremental IMAP response parser (RFC 3501 §7 and §9, with what RFC 9051 changes for a reader:
// ESEARCH, literal8, no RECENT required, the RFC 5530 response codes). Bytes may arrive split
// anywhere or several responses per read. A response is framed first (lines, and literals
// {n} / {n+} / ~{n} counted against the limits before any byte of them is held), then parsed into
// a typed Response; a server's extensions (unknown data, FETCH items and codes) are skipped, not
// refused. Hostile input gets an error value that names what was wrong, after which the parser
// stays failed: the stream is out of sync and the connection must end.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace deliverd::inbound {

struct ParserLimits {
  size_t max_literal = 8u << 20;    // bytes in one literal (a fetched body section)
  size_t max_response = 16u << 20;  // one whole response, line endings and literals included
  size_t max_line = 64 * 1024;      // one line of a response (between literals), without CRLF
  size_t max_depth = 64;            // nesting of parenthesised lists (BODYSTRUCTURE of nested parts)
  size_t max_values = 1u << 18;     // atoms, strings, numbers and lists parsed from one response
};

enum class ParseErrorKind : uint8_t {
  LiteralTooLarge,   // a literal announced more bytes than max_literal
  ResponseTooLarge,  // a response grew past max_response
  LineTooLong,       // a line grew past max_line
  TooDeep,           // lists nested deeper than max_depth
  TooManyValues,     // more than max_values in one response
  Syntax,            // not an IMAP response
};
std::string_view to_string(ParseErrorKind k);  // "literal_too_large", …

struct ParseError {
  ParseErrorKind kind = ParseErrorKind::Syntax;
  std::string detail;  // what was wrong and where, never more than a short excerpt of the input
};

// One parsed value of the generic grammar: what unknown data and extension items are kept as.
struct Value {
  enum class Type : uint8_t { Nil, Atom, Number, String, List };
  Type type = Type::Nil;
  std::string text;  // Atom and Number as sent, String decoded (quoted or literal)
  uint64_t number = 0;
  std::vector<Value> items;  // List
  bool is_nil() const { return type == Type::Nil; }
  bool is_string() const { return type == Type::String; }
};

// OK, NO, BAD, PREAUTH, BYE: the state of a tagged or untagged status response.
enum class Condition : uint8_t { None, Ok, No, Bad, Preauth, Bye };
std::string_view to_string(Condition c);

// Response codes in brackets (RFC 3501 §7.1, RFC 4315, RFC 5530, RFC 7162, RFC 9051).
enum class Code : uint8_t {
  None,
  Alert,
  Capability,
  UidValidity,
  UidNext,
  Unseen,
  PermanentFlags,
  ReadOnly,
  ReadWrite,
  TryCreate,
  Parse,
  BadCharset,
  AppendUid,
  CopyUid,
  UidNotSticky,
  HighestModSeq,
  Closed,
  Unavailable,           // RFC 5530: temporary failure on the server's side
  AuthenticationFailed,  // credentials wrong
  AuthorizationFailed,
  Expired,
  PrivacyRequired,
  ContactAdmin,
  NoPerm,
  InUse,
  ExpungeIssued,
  Corruption,
  ServerBug,
  ClientBug,
  CannotSet,
  Limit,  // RFC 5530: a limit of the server was reached (connections, bandwidth)
  OverQuota,
  AlreadyExists,
  NonExistent,
  Other,  // any other code; name holds it
};
std::string_view to_string(Code c);

struct ResponseCode {
  Code code = Code::None;
  std::string name;               // as sent, upper-cased ("UIDVALIDITY", "X-GM-…")
  uint64_t number = 0;            // UIDVALIDITY, UIDNEXT, UNSEEN, HIGHESTMODSEQ; APPENDUID/COPYUID's uidvalidity
  std::vector<std::string> args;  // CAPABILITY (upper-cased), PERMANENTFLAGS, BADCHARSET; APPENDUID/COPYUID sets
  std::string raw;                // everything between the name and "]"
};

// A body part from BODYSTRUCTURE (RFC 3501 §7.4.2, body-type-* and extension data).
struct BodyPart {
  std::string type, subtype;  // lower-cased: "multipart"/"report", "text"/"plain", "message"/"rfc822"
  std::vector<std::pair<std::string, std::string>> params;  // names lower-cased, values as sent
  std::string id, description, encoding;                    // encoding lower-cased
  uint64_t size = 0;                                        // octets (single parts)
  uint64_t lines = 0;                                       // text/* and message/rfc822
  std::string disposition;                                  // lower-cased, "" when none
  std::vector<std::pair<std::string, std::string>> disposition_params;
  // The section number to FETCH this part by ("1", "2.1"; "" for a message's top multipart),
  // counted as RFC 3501 §6.4.5 says, encapsulated messages included.
  std::string section;
  // Multipart: the children. message/rfc822 and message/global: the encapsulated message's body.
  std::vector<BodyPart> parts;
  bool multipart() const { return type == "multipart"; }
  std::string_view param(std::string_view name) const;  // case-insensitive; "" when absent
};

// BODY[section]<origin>, BINARY[section]<origin>, RFC822(.HEADER|.TEXT) of a FETCH response.
struct BodySection {
  std::string section;              // as the server spelled it between the brackets ("HEADER", "1.2.MIME")
  std::optional<uint32_t> origin;   // <n>: the first octet's offset, for partial fetches
  std::optional<std::string> data;  // nullopt for NIL
  bool binary = false;              // BINARY[…] (RFC 3516)
};

struct FetchData {
  uint32_t seq = 0;
  std::optional<uint32_t> uid;
  std::optional<std::vector<std::string>> flags;
  std::optional<uint64_t> rfc822_size;
  std::optional<std::string> internal_date;  // as sent: "17-Jul-1996 02:44:25 -0700"
  std::optional<BodyPart> body_structure;    // BODYSTRUCTURE, or BODY without a section
  std::optional<uint64_t> modseq;
  std::vector<BodySection> sections;
  // Case-insensitive match of the section text; nullptr when the response does not carry it.
  const BodySection* section(std::string_view name) const;
  bool has_flag(std::string_view flag) const;  // case-insensitive ("\\Seen")
};

// ESEARCH (RFC 4731, RFC 9051 §7.3.4): what a search returned, ALL kept as ranges.
struct ESearchData {
  std::string tag;  // the command it answers, when given
  bool uid = false;
  std::optional<uint32_t> min, max;
  std::optional<uint64_t> count;
  std::vector<std::pair<uint32_t, uint32_t>> all;  // inclusive ranges, in the order sent
};

enum class ResponseKind : uint8_t { Tagged, Untagged, Continuation };

// What an untagged response carries besides (or instead of) a status.
enum class DataKind : uint8_t {
  Status,      // * OK/NO/BAD/PREAUTH/BYE …
  Capability,  // * CAPABILITY …
  Exists,      // * n EXISTS
  Recent,      // * n RECENT
  Expunge,     // * n EXPUNGE
  Fetch,       // * n FETCH (…)
  Search,      // * SEARCH n…
  ESearch,     // * ESEARCH …
  Flags,       // * FLAGS (…)
  Enabled,     // * ENABLED …
  Other,       // anything else (LIST, STATUS, VANISHED, …): values kept generically
};

struct Response {
  ResponseKind kind = ResponseKind::Untagged;
  std::string tag;                        // Tagged only
  Condition condition = Condition::None;  // Tagged always; Untagged with DataKind::Status
  ResponseCode code;
  std::string text;  // the human-readable text; a continuation's text or base64
  DataKind data = DataKind::Status;
  uint64_t number = 0;             // EXISTS / RECENT count, EXPUNGE / FETCH sequence number
  std::vector<std::string> atoms;  // CAPABILITY (upper-cased), FLAGS, ENABLED
  std::vector<uint32_t> numbers;   // SEARCH
  ESearchData esearch;
  FetchData fetch;
  std::string name;           // Other: the data's name ("LIST", "STATUS", …) upper-cased
  std::vector<Value> values;  // Other: what followed the name
  size_t wire_bytes = 0;      // bytes on the wire, literals included
};

class ResponseParser {
 public:
  explicit ResponseParser(ParserLimits limits = {}) : limits_(limits) {}

  void feed(std::string_view bytes);
  // The next complete response, std::nullopt when more bytes are needed, or the error that
  // broke the stream (returned again on every later call).
  core::Result<std::optional<Response>, ParseError> next();

  bool failed() const { return error_.has_value(); }
  // Bytes held but not yet part of a returned response (after STARTTLS's OK this must be 0).
  size_t buffered() const { return buf_.size() - start_; }
  void reset();
  const ParserLimits& limits() const { return limits_; }

 private:
  core::Result<std::optional<Response>, ParseError> fail(ParseErrorKind kind, std::string detail);

  ParserLimits limits_;
  std::string buf_;
  size_t start_ = 0;         // where the response being framed begins
  size_t scan_ = 0;          // how far it has been framed (line ends and literals found so far)
  size_t line_start_ = 0;    // where the line being framed begins (after the last literal)
  size_t literal_left_ = 0;  // bytes of a literal still to arrive
  std::optional<ParseError> error_;
};

// One complete response (CRLF-terminated, literals inline as {n}CRLF + n bytes) parsed on its
// own; the framing limits are not applied, only max_depth. For tests and the fuzz target.
core::Result<Response, ParseError> parse_response(std::string_view wire, const ParserLimits& limits = {});

// The BODYSTRUCTURE of a message from its generic form; section numbers filled in.
core::Result<BodyPart, ParseError> body_structure_from(const Value& v);

}  // namespace deliverd::inbound
