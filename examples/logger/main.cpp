// Runs the Logger exercise: casts that log, calls that answer.
#include <filesystem>

#include "logger.hpp"
#include "nodus/node/format.hpp"

int main() {
  using logger::Logger;
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);
  nodus::Pid log = Logger::start_link(node).value();
  Logger::log(log, nodus::atom("info"), "server started");
  Logger::log(log, nodus::atom("error"), "disk almost full");
  Logger::log(log, nodus::atom("info"), "request served");
  fmt::print("get_logs()      -> {}\n", Logger::get_logs(log));
  fmt::print("get_logs(error) -> {}\n", Logger::get_logs(log, nodus::atom("error")));
  auto path = (std::filesystem::temp_directory_path() / "nodus_logger_demo.log").string();
  fmt::print("flush_to_disk({}) -> {}\n", path, Logger::flush_to_disk(log, path));
  fmt::print("clear()         -> {}\n", Logger::clear(log));
  fmt::print("get_logs()      -> {}\n", Logger::get_logs(log));
  return 0;
}
