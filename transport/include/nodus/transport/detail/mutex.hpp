// Mutexes whose use the compiler checks: clang's thread-safety analysis (-Wthread-safety, on in
// every clang build of nodus), in the style of leveldb's port/thread_annotations.h and
// port::Mutex. A member declared `NODUS_GUARDED_BY(mu_)` may be touched only while `mu_` is
// held, and a function declared `NODUS_REQUIRES(mu_)` only called so; clang says where not.
// Other compilers see plain std::mutex and std::shared_mutex.
//
// Why wrappers and not std::mutex directly: libstdc++'s mutexes and locks carry no annotations,
// so the analysis cannot see them take or release anything.
//
// Not part of nodus's API: it lives in transport, the lowest layer, so that every layer (transport,
// node, registry, kv, tools) annotates its own state with the same types.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define NODUS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define NODUS_THREAD_ANNOTATION(x)
#endif

#define NODUS_CAPABILITY(x) NODUS_THREAD_ANNOTATION(capability(x))
#define NODUS_SCOPED_CAPABILITY NODUS_THREAD_ANNOTATION(scoped_lockable)
#define NODUS_GUARDED_BY(x) NODUS_THREAD_ANNOTATION(guarded_by(x))
#define NODUS_PT_GUARDED_BY(x) NODUS_THREAD_ANNOTATION(pt_guarded_by(x))
#define NODUS_REQUIRES(...) NODUS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define NODUS_REQUIRES_SHARED(...) NODUS_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define NODUS_ACQUIRE(...) NODUS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define NODUS_ACQUIRE_SHARED(...) NODUS_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define NODUS_RELEASE(...) NODUS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define NODUS_RELEASE_SHARED(...) NODUS_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define NODUS_TRY_ACQUIRE(...) NODUS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define NODUS_EXCLUDES(...) NODUS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define NODUS_NO_THREAD_SAFETY_ANALYSIS NODUS_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace nodus::detail {

/// std::mutex, annotated. Lock it with MutexLock. Constant-initialised, so a global one may be
/// `constinit`.
class NODUS_CAPABILITY("mutex") Mutex {
 public:
  constexpr Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void lock() NODUS_ACQUIRE() { mu_.lock(); }
  void unlock() NODUS_RELEASE() { mu_.unlock(); }
  /// Takes the mutex if no one holds it; true if it did (then hand it to a MutexLock with
  /// std::adopt_lock).
  bool try_lock() NODUS_TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

/// std::shared_mutex, annotated: many readers (ReaderLock) or one writer (WriterLock).
class NODUS_CAPABILITY("mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;
  void lock() NODUS_ACQUIRE() { mu_.lock(); }
  void unlock() NODUS_RELEASE() { mu_.unlock(); }
  void lock_shared() NODUS_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() NODUS_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

/// Holds a Mutex for its scope (std::lock_guard).
class NODUS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) NODUS_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  /// Takes over a Mutex the caller holds already (after a successful try_lock()).
  MutexLock(Mutex& mu, std::adopt_lock_t) NODUS_REQUIRES(mu) : mu_(mu) {}
  ~MutexLock() NODUS_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

/// Releases a held Mutex for its scope and takes it again when the scope ends, also by an
/// exception (the MutexUnlocker of clang's thread-safety documentation). REQUIRES: the caller
/// holds `mu`.
class NODUS_SCOPED_CAPABILITY MutexUnlock {
 public:
  explicit MutexUnlock(Mutex& mu) NODUS_RELEASE(mu) : mu_(mu) { mu_.unlock(); }
  ~MutexUnlock() NODUS_RELEASE() { mu_.lock(); }
  MutexUnlock(const MutexUnlock&) = delete;
  MutexUnlock& operator=(const MutexUnlock&) = delete;

 private:
  Mutex& mu_;
};

/// Holds a SharedMutex exclusively for its scope.
class NODUS_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) NODUS_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() NODUS_RELEASE() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

/// Holds a SharedMutex shared for its scope.
class NODUS_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) NODUS_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() NODUS_RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

/// std::condition_variable over a Mutex (leveldb's port::CondVar). REQUIRES for every wait: the
/// caller holds the mutex (a MutexLock in scope). The waits are not annotated, since the
/// analysis cannot tell which Mutex a CondVar was built with.
class CondVar {
 public:
  explicit CondVar(Mutex& mu) : mu_(mu) {}
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  /// Releases the mutex, waits for a notify (or a spurious wake-up), takes it again.
  void wait() {
    std::unique_lock<std::mutex> lock(mu_.mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  /// As wait(), until `deadline` at the latest; false if it passed.
  template <class Clock, class Duration>
  bool wait_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    std::unique_lock<std::mutex> lock(mu_.mu_, std::adopt_lock);
    const bool notified = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return notified;
  }
  /// As wait(), for `d` at most.
  template <class Rep, class Period>
  void wait_for(const std::chrono::duration<Rep, Period>& d) {
    std::unique_lock<std::mutex> lock(mu_.mu_, std::adopt_lock);
    cv_.wait_for(lock, d);
    lock.release();
  }
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }

 private:
  Mutex& mu_;
  std::condition_variable cv_;
};

}  // namespace nodus::detail
