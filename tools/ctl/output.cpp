#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "client.hpp"
#include "ctl.hpp"

namespace nodus::ctl {

int exit_status(ErrorCode code) {
  const auto n = static_cast<unsigned>(code);
  if (code == ErrorCode::kOk) return kExitOk;
  if ((n >= 2000 && n <= 2999) || code == ErrorCode::kAuth) return kExitUsage;
  return kExitFailed;
}

std::vector<Command>& commands() {
  static std::vector<Command> table;
  return table;
}

Context::Context(GlobalOptions o) : opt_(std::move(o)) {}
Context::~Context() = default;

Client& Context::client() {
  if (!client_) client_ = Client::connect(opt_);
  return *client_;
}

bool use_colour() {
  static const bool kOn = ::isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR");
  return kOn;
}

std::string colour(const std::string& text, const char* code) {
  if (!use_colour()) return text;
  std::string out = "\033[";
  out.append(code).append("m").append(text).append("\033[0m");
  return out;
}

namespace {
// Display width: bytes, minus ANSI escapes.
std::size_t width(const std::string& s) {
  std::size_t w = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\033') {
      while (i < s.size() && s[i] != 'm') ++i;
      continue;
    }
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++w;
  }
  return w;
}
}  // namespace

void Table::print(const std::vector<std::size_t>& right) const {
  std::vector<std::size_t> w(headers_.size(), 0);
  for (std::size_t i = 0; i < headers_.size(); ++i) w[i] = width(headers_[i]);
  for (const auto& r : rows_) {
    for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], width(r[i]));
  }
  auto is_right = [&](std::size_t i) {
    return std::find(right.begin(), right.end(), i) != right.end();
  };
  auto line = [&](const std::vector<std::string>& cells, bool header) {
    std::string out;
    for (std::size_t i = 0; i < cells.size() && i < w.size(); ++i) {
      std::string pad(w[i] - width(cells[i]), ' ');
      std::string cell = header ? colour(cells[i], "1") : cells[i];
      if (i) out += "  ";
      if (is_right(i)) {
        out += pad + cell;
      } else if (i + 1 < cells.size()) {
        out += cell + pad;
      } else {
        out += cell;
      }
    }
    std::cout << out << '\n';
  };
  line(headers_, true);
  for (const auto& r : rows_) line(r, false);
}

void print_json(const nlohmann::json& j) {
  std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

std::string bytes_text(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f %s", v, units[u]);
  }
  return buf;
}

std::string duration_text(std::int64_t ms) {
  if (ms < 1000) return std::to_string(ms) + " ms";
  std::int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + " s";
  if (s < 3600) return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
  return std::to_string(s / 3600) + " h " + std::to_string((s % 3600) / 60) + " min";
}

std::string state_text(const std::string& state) {
  return colour(state, state == "up" ? "32" : "31");
}

void expect_args(const std::vector<std::string>& args, std::size_t min, std::size_t max,
                 const char* usage) {
  if (args.size() < min || args.size() > max) {
    throw CtlError(ErrorCode::kBadArg, std::string("usage: nodusctl ") + usage);
  }
}

}  // namespace nodus::ctl
