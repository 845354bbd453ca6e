// Replays the Logger exercise: log casts, get_logs (with a level filter), flush_to_disk, clear.
#include "logger.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../node/test_util.hpp"

namespace {

using namespace nodus;
using logger::Logger;

// The messages of a list of entries, in order.
List messages(const Term& logs) {
  List out;
  for (const Term& e : logs.as_list()) out.push_back(*e.find("message"));
  return out;
}

class LoggerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = "nodus_logger_test_";
    name.append(std::to_string(::getpid()));
    dir = std::filesystem::temp_directory_path() / name;
    std::filesystem::create_directories(dir);
    log = Logger::start_link(node).value();
    Logger::log(log, atom("info"), "started");
    Logger::log(log, atom("error"), "disk full");
    Logger::log(log, atom("info"), "served");
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  Node node{NodeOptions{.name = "logger_test", .schedulers = 2}};
  Inbox me{node};
  std::filesystem::path dir;
  Pid log;
};

TEST_F(LoggerTest, GetLogsReturnsEveryEntryOldestFirst) {
  // The casts were sent before this call, so they are handled before it.
  EXPECT_EQ(messages(Logger::get_logs(log)),
            (List{bin("started"), bin("disk full"), bin("served")}));
}

TEST_F(LoggerTest, GetLogsFiltersByLevel) {
  Term errors = Logger::get_logs(log, atom("error"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(*errors[0].find("level"), Term("error"));
  EXPECT_EQ(*errors[0].find("message"), bin("disk full"));
  EXPECT_TRUE(errors[0].find("timestamp")->is_int());
  EXPECT_EQ(messages(Logger::get_logs(log, atom("info"))), (List{bin("started"), bin("served")}));
  EXPECT_EQ(Logger::get_logs(log, atom("debug")), Term(List{}));
}

TEST_F(LoggerTest, FlushWritesTheEntriesToAFile) {
  auto path = (dir / "app.log").string();
  EXPECT_EQ(Logger::flush_to_disk(log, path), Term("ok"));
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  EXPECT_NE(text.find("\"disk full\""), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
}

TEST_F(LoggerTest, FlushToAMissingDirectoryRepliesWithTheError) {
  Term r = Logger::flush_to_disk(log, (dir / "no" / "such" / "dir.log").string());
  EXPECT_TRUE(r.match({"error", _bin})) << r.to_string();
}

TEST_F(LoggerTest, ClearEmptiesTheLog) {
  EXPECT_EQ(Logger::clear(log), Term("ok"));
  EXPECT_EQ(Logger::get_logs(log), Term(List{}));
}

}  // namespace
