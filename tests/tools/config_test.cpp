// tools/src/config.cpp: nodusd's keys from a file, the environment and flags, their defaults
// (the options structs'), and the refusals that name the key and where its value came from.
#include "config.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "apps.hpp"

namespace nodus::tools {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("nodus-config-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write("cookie", "secret\n", 0600);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    const std::string p = (dir_ / name).string();
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  // n1.conf: the minimal node, plus `extra` lines.
  std::string conf(const std::string& extra = "") {
    return write("n1.conf",
                 "[node]\nname = n1\nlisten = tcp://127.0.0.1:7101\n[cluster]\n"
                 "cookie_file = cookie\n" +
                     extra);
  }
  Result<NodeConfig> load(const std::string& file, std::vector<std::string> flags = {},
                          Environment env = {}) {
    std::vector<const char*> argv = {"nodusd", "--config", file.c_str()};
    for (const auto& f : flags) argv.push_back(f.c_str());
    auto cmd = parse_command_line(static_cast<int>(argv.size()), argv.data());
    if (!cmd.ok()) return cmd.error();
    return load_config(*cmd, env);
  }
  // The refusal's message; fails the test when the load succeeded or the code is not kBadConfig.
  std::string refusal(const Result<NodeConfig>& r) {
    EXPECT_FALSE(r.ok());
    if (r.ok()) return "";
    EXPECT_EQ(ErrorCode::kBadConfig, r.error().code()) << r.error().to_string();
    return r.error().message();
  }

  fs::path dir_;
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(ConfigTest, DefaultsAreTheOptionsStructs) {
  auto c = load(conf());
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  const NodeOptions node_defaults;
  EXPECT_EQ("n1", c->node.name);
  EXPECT_EQ(node_defaults.heartbeat_interval, c->node.heartbeat_interval);
  EXPECT_EQ(node_defaults.down_after, c->node.down_after);
  EXPECT_EQ(node_defaults.schedulers, c->node.schedulers);
  EXPECT_EQ(kv::Options{}.partitions, c->kv.partitions);
  EXPECT_EQ(LogSettings{}.format, c->log.format);
  EXPECT_EQ("secret", c->node.cookie) << "the trailing newline is not part of the cookie";
  EXPECT_EQ((dir_ / "cookie").string(), c->cookie_file) << "relative to the config file";
  EXPECT_EQ(Source::kDefault, c->effective.at("node.heartbeat_ms").second);
  EXPECT_EQ(std::to_string(node_defaults.heartbeat_interval.count()),
            c->effective.at("node.heartbeat_ms").first);
  EXPECT_TRUE(c->warnings.empty());
}

TEST_F(ConfigTest, HelpShowsEachDefaultFromTheOptionsStructs) {
  const std::string help = config_help();
  EXPECT_TRUE(has(help, "node.heartbeat_ms")) << help;
  // (appended, not "[" + string: GCC 12 warns falsely on that)
  std::string down_after("[");
  down_after.append(std::to_string(NodeOptions{}.down_after.count())).append("]");
  EXPECT_TRUE(has(help, down_after)) << help;
  std::string partitions("[");
  partitions.append(std::to_string(kv::Options{}.partitions)).append("]");
  EXPECT_TRUE(has(help, partitions)) << help;
  for (const AppKind& k : app_kinds()) EXPECT_TRUE(has(help, k.name)) << k.name;
}

TEST_F(ConfigTest, AFlagBeatsTheEnvironmentWhichBeatsTheFile) {
  const std::string file = conf("[log]\nlevel = warn\nformat = json\n");
  auto c = load(file, {"--log.level=debug"},
                {{"NODUS_LOG_LEVEL", "error"}, {"NODUS_LOG_FORMAT", "text"}});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ("debug", c->log.level);
  EXPECT_EQ(Source::kFlag, c->effective.at("log.level").second);
  EXPECT_EQ("text", c->log.format);
  EXPECT_EQ(Source::kEnv, c->effective.at("log.format").second);
  c = load(file);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ("warn", c->log.level);
  EXPECT_EQ(Source::kFile, c->effective.at("log.level").second);
}

TEST_F(ConfigTest, ARepeatableKeyTakesEveryValueOfTheStrongestSource) {
  const std::string file = conf("seed = tcp://127.0.0.1:7102\nseed = tcp://127.0.0.1:7103\n");
  auto c = load(file);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ((std::vector<std::string>{"tcp://127.0.0.1:7102", "tcp://127.0.0.1:7103"}),
            c->node.seeds);
  c = load(file, {"--cluster.seed", "tcp://127.0.0.1:7200"});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(std::vector<std::string>{"tcp://127.0.0.1:7200"}, c->node.seeds);
}

TEST_F(ConfigTest, AnEmptyNameNamesTheKeyTheFileAndTheLine) {
  const std::string file = write("n1.conf",
                                 "[node]\nname =\nlisten = tcp://127.0.0.1:7101\n[cluster]\n"
                                 "cookie_file = cookie\n");
  const std::string why = refusal(load(file));
  EXPECT_TRUE(has(why, "node.name")) << why;
  EXPECT_TRUE(has(why, file + " (line 2)")) << why;
  EXPECT_TRUE(has(why, "empty")) << why;
  EXPECT_FALSE(has(why, "--")) << "names no flag: " << why;
}

TEST_F(ConfigTest, AMissingRequiredKeyNamesTheFile) {
  const std::string file = write("n1.conf", "[node]\nname = n1\n[cluster]\ncookie_file = cookie\n");
  const std::string why = refusal(load(file));
  EXPECT_TRUE(has(why, "node.listen in " + file + ": missing")) << why;
}

TEST_F(ConfigTest, ACookiePathThatIsADirectorySaysSo) {
  fs::create_directories(dir_ / "cookies");
  const std::string why = refusal(load(conf(), {"--cluster.cookie_file=cookies"}));
  EXPECT_TRUE(has(why, "cluster.cookie_file (flag --cluster.cookie_file)")) << why;
  EXPECT_TRUE(has(why, (dir_ / "cookies").string() + " is a directory")) << why;
  EXPECT_FALSE(has(why, "empty")) << why;
}

TEST_F(ConfigTest, AMissingOrBlankCookieFileIsRefused) {
  std::string why = refusal(load(conf(), {"--cluster.cookie_file=nope"}));
  EXPECT_TRUE(has(why, "does not exist")) << why;
  write("blank", " \n\t\n");
  why = refusal(load(conf(), {"--cluster.cookie_file=blank"}));
  EXPECT_TRUE(has(why, "is empty")) << why;
}

TEST_F(ConfigTest, TrailingWhiteSpaceIsNotPartOfASecret) {
  write("cookie", "  two words \t\r\n\n", 0600);
  auto c = load(conf());
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ("  two words", c->node.cookie);
}

TEST_F(ConfigTest, ASecretFileOthersMayReadIsAWarning) {
  write("cookie", "secret\n", 0644);
  auto c = load(conf());
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  ASSERT_EQ(1u, c->warnings.size());
  EXPECT_TRUE(has(c->warnings[0], (dir_ / "cookie").string())) << c->warnings[0];
  EXPECT_TRUE(has(c->warnings[0], "0644")) << c->warnings[0];
  EXPECT_TRUE(has(c->warnings[0], "chmod 600")) << c->warnings[0];
}

TEST_F(ConfigTest, ValuesOutOfRangeNameTheRange) {
  std::string why = refusal(load(conf(), {"--node.heartbeat_ms=5"}));
  EXPECT_TRUE(has(why, "node.heartbeat_ms (flag --node.heartbeat_ms)")) << why;
  EXPECT_TRUE(has(why, "from 10 to 60000 (ms)")) << why;
  why = refusal(load(conf("[kv]\nreplicas = 2\nwrite_quorum = 3\n")));
  EXPECT_TRUE(has(why, "kv.write_quorum in " + (dir_ / "n1.conf").string() + " (line 8)")) << why;
  why = refusal(load(conf(), {"--kv.partitions=many"}));
  EXPECT_TRUE(has(why, "kv.partitions")) << why;
  why = refusal(load(conf(), {"--log.level=loud"}));
  EXPECT_TRUE(has(why, "\"loud\" is not one of trace")) << why;
}

TEST_F(ConfigTest, TheKvKeysAreTheStoresOptions) {
  auto c = load(
      conf("[kv]\ninitial_members = n1 n2, n3\npartitions = 16\nreplicas = 2\nwrite_quorum = 1\n"
           "conflicts = lww\ntombstone_ttl = 5\nrequest_timeout_ms = 1500\nvnode_queue = 10\n"
           "max_value_bytes = 1000\nmax_siblings = 7\nread_repair_per_s = 0\n"
           "handoff_interval_ms = 250\nprimary_write_quorum = 1\ndurable_write_quorum = 0\n"
           "primary_read_quorum = 2\nmax_object_bytes = 4096\nttl_sweep_interval_ms = 250\n"));
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_TRUE(c->run_store());
  EXPECT_EQ((std::vector<std::string>{"n1", "n2", "n3"}), c->kv.initial_members);
  EXPECT_EQ(16u, c->kv.partitions);
  EXPECT_EQ(2u, c->kv.replicas);
  EXPECT_EQ(1u, c->kv.write_quorum);
  EXPECT_EQ(kv::Options{}.read_quorum, c->kv.read_quorum);
  EXPECT_EQ(kv::Conflicts::kLww, c->kv.conflicts);
  EXPECT_EQ(std::chrono::seconds(5), c->kv.tombstone_ttl) << "kv.tombstone_ttl is in seconds";
  EXPECT_EQ(std::chrono::milliseconds(1500), c->kv.request_timeout);
  EXPECT_EQ(10u, c->kv.vnode_queue);
  EXPECT_EQ(1000u, c->kv.max_value_bytes);
  EXPECT_EQ(7u, c->kv.max_siblings);
  EXPECT_EQ(0u, c->kv.read_repair_per_s) << "0 turns read repair off";
  EXPECT_EQ(std::chrono::milliseconds(250), c->kv.handoff_interval);
  EXPECT_EQ(1u, c->kv.primary_write_quorum);
  EXPECT_EQ(0u, c->kv.durable_write_quorum);
  EXPECT_EQ(2u, c->kv.primary_read_quorum);
  EXPECT_EQ(4096u, c->kv.max_object_bytes);
  EXPECT_EQ(std::chrono::milliseconds(250), c->kv.ttl_sweep_interval);
  EXPECT_EQ("2", c->effective.at("kv.primary_read_quorum").first);
  EXPECT_EQ("n1 n2 n3", c->effective.at("kv.initial_members").first);
  EXPECT_EQ("5", c->effective.at("kv.tombstone_ttl").first);
  EXPECT_EQ("lww", c->effective.at("kv.conflicts").first);
  EXPECT_TRUE(c->warnings.empty()) << c->warnings[0];
  // The contexts' secret: derived from the cookie, the same for the same cookie, never it.
  EXPECT_EQ(kv_context_secret("secret"), c->kv.context_secret);
  EXPECT_EQ(32u, c->kv.context_secret.size());
  EXPECT_EQ(std::string::npos, c->kv.context_secret.find("secret"));
  EXPECT_NE(kv_context_secret("secret2"), c->kv.context_secret);
  // Without initial_members the node runs no store.
  c = load(conf());
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->run_store());
  EXPECT_EQ(std::chrono::seconds(60), kv::Options{}.tombstone_ttl);
  for (const char* key :
       {"kv.tombstone_ttl", "kv.primary_read_quorum", "kv.primary_write_quorum",
        "kv.durable_write_quorum", "kv.max_object_bytes", "kv.ttl_sweep_interval_ms"}) {
    EXPECT_TRUE(has(config_help(), key)) << key << " in --help";
  }
}

TEST_F(ConfigTest, BadKvValuesAreRefusedAndUnwiseOnesWarned) {
  std::string why = refusal(load(conf(), {"--kv.partitions=100"}));
  EXPECT_TRUE(has(why, "kv.partitions (flag --kv.partitions): expected a power of two")) << why;
  why = refusal(load(conf("[kv]\ninitial_members = n1 n2 n1\n")));
  EXPECT_TRUE(has(why, "kv.initial_members in")) << why;
  EXPECT_TRUE(has(why, "names n1 twice")) << why;
  why = refusal(load(conf(), {"--kv.initial_members=n1 b@d"}));
  EXPECT_TRUE(has(why, "\"b@d\" is not a name")) << why;
  why = refusal(load(conf(), {"--kv.initial_members= , "}));
  EXPECT_TRUE(has(why, "is empty; name the nodes")) << why;
  why = refusal(load(conf(), {"--kv.conflicts=newest"}));
  EXPECT_TRUE(has(why, "\"newest\" is not one of siblings, lww")) << why;
  why = refusal(load(conf(), {"--kv.tombstone_ttl=-1"}));
  EXPECT_TRUE(has(why, "seconds from 0")) << why;
  why = refusal(load(conf(), {"--kv.max_value_bytes=0"}));
  EXPECT_TRUE(has(why, "kv.max_value_bytes")) << why;
  why = refusal(load(conf(), {"--kv.ttl_sweep_interval_ms=0"}));
  EXPECT_TRUE(has(why, "kv.ttl_sweep_interval_ms")) << why;
  // PW, DW and PR: 0 (none) up to N.
  why = refusal(load(conf("[kv]\nreplicas = 3\nprimary_read_quorum = 4\n")));
  EXPECT_TRUE(has(why, "kv.primary_read_quorum in")) << why;
  EXPECT_TRUE(has(why, "expected 0 to kv.replicas (3), got 4")) << why;
  why = refusal(load(conf(), {"--kv.primary_write_quorum=4"}));
  EXPECT_TRUE(has(why,
                  "kv.primary_write_quorum (flag --kv.primary_write_quorum): expected 0 to "
                  "kv.replicas (3), got 4"))
      << why;
  why = refusal(load(conf(), {}, {{"NODUS_KV_DURABLE_WRITE_QUORUM", "-1"}}));
  EXPECT_TRUE(has(why, "kv.durable_write_quorum")) << why;
  EXPECT_TRUE(has(why, "expected a whole number from 0 to 16")) << why;
  why = refusal(load(conf(), {"--kv.primary_read_quorum=two"}));
  EXPECT_TRUE(has(why, "\"two\"")) << why;
  // kv.max_object_bytes: above kv.max_value_bytes + 1 KiB, and N of them fit a get's answer.
  why = refusal(load(conf("[kv]\nmax_object_bytes = 1048576\n")));
  EXPECT_TRUE(has(why, "kv.max_object_bytes in")) << why;
  EXPECT_TRUE(has(why, "must exceed kv.max_value_bytes by at least 1024")) << why;
  why = refusal(load(conf(), {"--kv.max_object_bytes=20000000"}));
  EXPECT_TRUE(has(why, "kv.max_object_bytes (flag --kv.max_object_bytes)")) << why;
  EXPECT_TRUE(has(why, "x kv.replicas must be at most")) << why;
  why = refusal(load(conf(), {"--kv.max_object_bytes=60000000"}));
  EXPECT_TRUE(has(why, "expected a whole number from 0 to 50331648")) << why;
  auto small = load(conf(), {"--kv.max_value_bytes=1000", "--kv.max_object_bytes=2024"});
  EXPECT_TRUE(small.ok()) << small.error().to_string();
  why = refusal(load(conf(), {"--kv.sync=sometimes"}));
  EXPECT_TRUE(has(why, "\"sometimes\" is not one of always, interval, none")) << why;
  EXPECT_TRUE(has(why, "kv.sync")) << why;
  why = refusal(load(conf(), {"--kv.sync_interval_ms=0"}));
  EXPECT_TRUE(has(why, "kv.sync_interval_ms")) << why;
  why = refusal(load(conf(), {"--kv.durable_write_quorum=17"}));
  EXPECT_TRUE(has(why, "kv.durable_write_quorum")) << why;
  // Quorums no ring of these members can meet, and DW that no replica here can give: warnings.
  auto c =
      load(conf("[kv]\ninitial_members = n1\ndata_dir = data\nsync = none\n"
                "sync_interval_ms = 250\ndurable_write_quorum = 1\n"));
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  ASSERT_EQ(2u, c->warnings.size());
  EXPECT_TRUE(has(c->warnings[0], "no_quorum")) << c->warnings[0];
  EXPECT_TRUE(has(c->warnings[1], "kv.sync = always")) << c->warnings[1];
  EXPECT_EQ((dir_ / "data").string(), c->kv.data_dir);
  EXPECT_EQ(kv::SyncMode::kNone, c->kv.sync);
  EXPECT_EQ(250, c->kv.sync_interval.count());
  EXPECT_EQ(1u, c->kv.durable_write_quorum);
  c = load(conf("[kv]\ninitial_members = n1\n"));
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(kv::SyncMode::kAlways, c->kv.sync);  // the default
  EXPECT_TRUE(c->kv.data_dir.empty());
}

TEST_F(ConfigTest, UnknownKeysSectionsAndVariablesAreRefused) {
  std::string why = refusal(load(conf("[node]\nnmae = typo\n")));
  EXPECT_TRUE(has(why, "unknown key 'node.nmae'")) << why;
  EXPECT_TRUE(has(why, "n1.conf:7")) << why;
  why = refusal(load(conf("[nodes]\n")));
  EXPECT_TRUE(has(why, "unknown section [nodes]")) << why;
  why = refusal(load(conf(), {}, {{"NODUS_NODE_NAEM", "x"}}));
  EXPECT_TRUE(has(why, "NODUS_NODE_NAEM")) << why;
  why = refusal(load(conf("[node]\nname = again\n")));
  EXPECT_TRUE(has(why, "given more than once")) << why;
  // nodusctl's own variables are no config keys, and no typos either.
  auto c = load(conf(), {}, {{"NODUS_NODE", "tcp://127.0.0.1:1"}, {"NODUS_COOKIE_FILE", "x"}});
  EXPECT_TRUE(c.ok()) << c.error().to_string();
}

TEST_F(ConfigTest, TheCommandLineRefusesUnknownFlagsAndFlagsWithoutValues) {
  const char* unknown[] = {"nodusd", "--no-such-flag"};
  auto cmd = parse_command_line(2, unknown);
  ASSERT_FALSE(cmd.ok());
  EXPECT_EQ(ErrorCode::kBadArg, cmd.error().code());
  EXPECT_TRUE(has(cmd.error().message(), "--no-such-flag")) << cmd.error().message();
  const char* dangling[] = {"nodusd", "--node.name"};
  cmd = parse_command_line(2, dangling);
  ASSERT_FALSE(cmd.ok());
  EXPECT_TRUE(has(cmd.error().message(), "--node.name needs a value"));
  const char* both[] = {"nodusd", "--check", "--node.name", "a", "--node.listen=tcp://h:1"};
  cmd = parse_command_line(5, both);
  ASSERT_TRUE(cmd.ok());
  EXPECT_TRUE(cmd->check);
  ASSERT_EQ(2u, cmd->flags.size());
  EXPECT_EQ("a", cmd->flags[0].second);
  EXPECT_EQ("tcp://h:1", cmd->flags[1].second);
}

TEST_F(ConfigTest, CurveNeedsBothKeysAndKeyedSeeds) {
  write("n1.key", "not a key\n");
  std::string why = refusal(load(conf("[node]\ncurve_secret_file = n1.key\n")));
  EXPECT_TRUE(has(why, "node.curve_public_key")) << why;
  why = refusal(load(conf("curve_allowed = x\n")));
  EXPECT_TRUE(has(why, "cluster.curve_allowed")) << why;
}

TEST_F(ConfigTest, AppsAreKindAndNameAndTheKindsComeFromTheFactoryTable) {
  auto app = parse_app("counter global:hits");
  ASSERT_TRUE(app.ok()) << app.error().to_string();
  EXPECT_EQ("counter", app->kind);
  EXPECT_EQ("global", app->scope);
  EXPECT_EQ("hits", app->name);
  auto bad = parse_app("juggler local:x");
  ASSERT_FALSE(bad.ok());
  for (const AppKind& k : app_kinds()) EXPECT_TRUE(has(bad.error().message(), k.name));
  EXPECT_FALSE(parse_app("counter hits").ok());
  EXPECT_FALSE(parse_app("stack via:noslash").ok());
  EXPECT_FALSE(parse_app("stack local:x extra").ok());
  std::string why = refusal(load(conf("[apps]\nstart = stack local:s\nstart = pool local:s\n")));
  EXPECT_TRUE(has(why, "used twice")) << why;
  // The capstone over the store: only where the store runs.
  why = refusal(load(conf("[apps]\nstart = kv_store local:kv\n")));
  EXPECT_TRUE(has(why, "apps.start")) << why;
  EXPECT_TRUE(has(why, "kv.initial_members")) << why;
  auto kv = load(conf("[kv]\ninitial_members = n1\n[apps]\nstart = kv_store local:kv\n"));
  ASSERT_TRUE(kv.ok()) << kv.error().to_string();
  EXPECT_EQ("kv_store", kv->apps.at(0).kind);
}

TEST_F(ConfigTest, RespListenIsHostPortAndNeedsTheStore) {
  auto ok =
      load(conf("[kv]\ninitial_members = n1\n[resp]\nlisten = 127.0.0.1:6390\n"
                "max_clients = 50\n"));
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  EXPECT_EQ("127.0.0.1:6390", ok->resp_listen);
  EXPECT_EQ(50u, ok->resp_max_clients);
  std::string why = refusal(load(conf("[kv]\ninitial_members = n1\n"), {"--resp.listen=6390"}));
  EXPECT_TRUE(has(why, "resp.listen (flag --resp.listen): \"6390\" is not HOST:PORT")) << why;
  why = refusal(load(conf(), {"--resp.listen=127.0.0.1:6390"}));
  EXPECT_TRUE(has(why, "resp.listen")) << why;
  EXPECT_TRUE(has(why, "kv.initial_members is set")) << why;
  why = refusal(load(conf("[kv]\ninitial_members = n1\n"), {"--resp.max_clients=0"}));
  EXPECT_TRUE(has(why, "expected a whole number from 1 to 100000")) << why;
}

TEST_F(ConfigTest, ListeningOnEveryAddressNeedsAnAdvertisedEndpoint) {
  const std::string wild = write("n1.conf",
                                 "[node]\nname = n1\nlisten = tcp://0.0.0.0:7101\n[cluster]\n"
                                 "cookie_file = cookie\n");
  std::string why = refusal(load(wild));
  EXPECT_TRUE(has(why, "node.listen")) << why;
  EXPECT_TRUE(has(why, "node.advertise")) << why;

  auto ok = load(wild, {"--node.advertise=tcp://n1.example.net:7101"});
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  EXPECT_EQ("tcp://n1.example.net:7101", ok->node.advertise);
  EXPECT_EQ("tcp://0.0.0.0:7101", ok->node.listen);

  why = refusal(load(conf(), {"--node.advertise=tcp://n1.example.net:*"}));
  EXPECT_TRUE(has(why, "node.advertise (flag --node.advertise)")) << why;
  why = refusal(load(conf("[node]\nadvertise = n1.example.net:7101\n")));
  EXPECT_TRUE(has(why, "node.advertise")) << why;
  EXPECT_TRUE(has(why, "tcp://HOST:PORT")) << why;
}

}  // namespace
}  // namespace nodus::tools
