// Logging for nodusd: spdlog's default logger, writing human lines ("text") or one JSON object
// a line ("json") to stderr or a file.
#pragma once

#include <string>

namespace nodus::tools {

/// Sets spdlog's default logger. `file` empty: stderr. Returns false (and sets `why`) when the
/// file cannot be opened.
bool setup_logging(const std::string& node, const std::string& level, const std::string& format,
                   const std::string& file, std::string& why);

}  // namespace nodus::tools
