// The annotated mutexes (Mutex, SharedMutex, their locks, CondVar and the NODUS_GUARDED_BY
// family) moved to transport, the lowest layer, so that every layer uses the same ones: see
// nodus/transport/detail/mutex.hpp. Kept so that node's and registry's includes stay as they are.
#pragma once

#include "nodus/transport/detail/mutex.hpp"
