// Runs the Logger exercise: casts that log, calls that answer.
#include <cstdio>
#include <filesystem>

#include "logger.hpp"

int main() {
  using logger::Logger;
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);
  nodus::Pid log = Logger::start_link(node).value();
  Logger::log(log, nodus::atom("info"), "server started");
  Logger::log(log, nodus::atom("error"), "disk almost full");
  Logger::log(log, nodus::atom("info"), "request served");
  std::printf("get_logs()      -> %s\n", Logger::get_logs(log).to_string().c_str());
  std::printf("get_logs(error) -> %s\n",
              Logger::get_logs(log, nodus::atom("error")).to_string().c_str());
  auto path = (std::filesystem::temp_directory_path() / "nodus_logger_demo.log").string();
  std::printf("flush_to_disk(%s) -> %s\n", path.c_str(),
              Logger::flush_to_disk(log, path).to_string().c_str());
  std::printf("clear()         -> %s\n", Logger::clear(log).to_string().c_str());
  std::printf("get_logs()      -> %s\n", Logger::get_logs(log).to_string().c_str());
  return 0;
}
