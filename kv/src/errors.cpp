// Registers the store's error table (nodus/kv/errors.hpp) with transport's, at static
// initialisation.
#include "nodus/kv/errors.hpp"

NODUS_DEFINE_ERRORS(kv, 6000, 6999, NODUS_KV_ERRORS);

namespace nodus::kv::detail {

bool errors_registered() { return kNodusErrorTableRegistered_kv; }

}  // namespace nodus::kv::detail
