#pragma once
// The Lua scripts that make the policy atomic across the fleet. The current time is always an
// argument (never Redis TIME), so tests can run a month on a simulated clock. Key and argument
// order are documented in scripts.cpp next to each script.
#include <string_view>

namespace deliverd::policy::scripts {

extern const std::string_view kAdmit;
extern const std::string_view kLearn;
extern const std::string_view kRelease;
extern const std::string_view kResume;

}  // namespace deliverd::policy::scripts
