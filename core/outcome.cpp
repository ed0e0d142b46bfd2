#include "core/outcome.h"

#include <ostream>

namespace deliverd::core {

std::ostream& operator<<(std::ostream& os, Status s) { return os << to_string(s); }
std::ostream& operator<<(std::ostream& os, Phase p) { return os << to_string(p); }
std::ostream& operator<<(std::ostream& os, Reason r) { return os << to_string(r); }
std::ostream& operator<<(std::ostream& os, Fault f) { return os << to_string(f); }
std::ostream& operator<<(std::ostream& os, TlsPolicy p) { return os << to_string(p); }

}  // namespace deliverd::core
