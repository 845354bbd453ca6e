// The two-process scenarios of nodus-bench.
#pragma once

#include <string>

namespace nodus::bench {

struct Args {
  std::string scenario;
  double seconds = 3;
  unsigned schedulers = 0;
  long count = 0;
};

void zmq_baseline_scenario(const Args& a);
void remote_call_scenario(const Args& a);
void remote_cast_scenario(const Args& a);

}  // namespace nodus::bench
