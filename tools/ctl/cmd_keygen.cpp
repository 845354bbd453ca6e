// keygen [--secret-file FILE]: a CURVE key pair for one node.
#include <sys/stat.h>

#include <fstream>
#include <iostream>

#include "ctl.hpp"
#include "nodus/transport/curve.hpp"

namespace nodus::ctl {

namespace {

int run_keygen(Context& ctx, const std::vector<std::string>& args) {
  std::string secret_file;
  if (args.size() == 2 && args[0] == "--secret-file") {
    secret_file = args[1];
  } else if (!args.empty()) {
    throw CtlError(ErrorCode::kBadArg, "usage: nodusctl keygen [--secret-file FILE]");
  }
  // Keys without '#', so that they survive every config syntax (a '#' after a space starts a
  // comment, and "ENDPOINT#KEY" splits at the first '#').
  transport::CurveKeys keys;
  for (int i = 0; i < 1000; ++i) {
    auto k = transport::generate_curve_keys();
    if (!k.ok())
      throw CtlError(ErrorCode::kInternal, "cannot make CURVE keys: " + k.error().to_string());
    keys = *k;
    if (keys.public_key.find('#') == std::string::npos &&
        keys.secret_key.find('#') == std::string::npos) {
      break;
    }
  }
  if (!secret_file.empty()) {
    std::ofstream out(secret_file, std::ios::trunc);
    if (!out) throw CtlError(ErrorCode::kInternal, "cannot write " + secret_file);
    out << keys.secret_key << "\n";
    out.close();
    ::chmod(secret_file.c_str(), 0600);
  }
  if (ctx.json()) {
    nlohmann::json j{{"public_key", keys.public_key}};
    if (secret_file.empty()) {
      j["secret_key"] = keys.secret_key;
    } else {
      j["secret_file"] = secret_file;
    }
    print_json(j);
    return kExitOk;
  }
  std::cout << "public_key = " << keys.public_key << "\n";
  if (secret_file.empty()) {
    std::cout << "secret_key = " << keys.secret_key << "\n"
              << "# keep the secret key in a file of its own (node.curve_secret_file), readable "
                 "only by the node\n";
  } else {
    std::cout << "# secret key written to " << secret_file << " (mode 0600)\n";
  }
  std::cout << "# put the public key in node.curve_public_key, and in every other node's "
               "cluster.curve_allowed\n";
  return kExitOk;
}

const Registrar kKeygenCommand({"keygen", "keygen [--secret-file FILE]",
                                "a new CURVE key pair for one node", run_keygen});

}  // namespace

}  // namespace nodus::ctl
