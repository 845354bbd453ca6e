// Replays the TodoServer exercise: casts change the list, calls read it.
#include "todo_server.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace todo_server;

class TodoServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TodoServer::add_entry(s, {.date = "2024-12-19", .title = "Dentist"});
    TodoServer::add_entry(s, {.date = "2024-12-20", .title = "Shopping"});
    TodoServer::add_entry(s, {.date = "2024-12-19", .title = "Movies"});
  }

  Node node{NodeOptions{.name = "todo_server_test", .schedulers = 2}};
  Inbox me{node};
  Pid s = TodoServer::start_link(node).value();
};

TEST_F(TodoServerTest, EntriesOfADate) {
  EXPECT_EQ(TodoServer::entries(s, "2024-12-19").value(),
            (std::vector<Entry>{{1, "2024-12-19", "Dentist"}, {3, "2024-12-19", "Movies"}}));
  EXPECT_TRUE(TodoServer::entries(s, "2025-01-01").value().empty());
}

TEST_F(TodoServerTest, UpdateEntryAppliesTheFunction) {
  TodoServer::update_entry(s, 1, [](Entry& e) { e.date = "2024-12-20"; });
  EXPECT_EQ(TodoServer::entries(s, "2024-12-20").value(),
            (std::vector<Entry>{{1, "2024-12-20", "Dentist"}, {2, "2024-12-20", "Shopping"}}));
}

TEST_F(TodoServerTest, UpdateOfAnUnknownIdChangesNothing) {
  TodoServer::update_entry(s, 99, [](Entry& e) { e.title = "never"; });
  EXPECT_EQ(TodoServer::all_entries(s).value().size(), 3u);
}

TEST_F(TodoServerTest, DeleteEntryRemovesIt) {
  TodoServer::delete_entry(s, 2);
  EXPECT_EQ(TodoServer::all_entries(s).value(),
            (std::vector<Entry>{{1, "2024-12-19", "Dentist"}, {3, "2024-12-19", "Movies"}}));
}

TEST_F(TodoServerTest, AllEntriesOldestFirst) {
  auto all = TodoServer::all_entries(s).value();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].title, "Dentist");
  EXPECT_EQ(all[1].title, "Shopping");
  EXPECT_EQ(all[2].title, "Movies");
}

}  // namespace
