#include "timer_service.hpp"

#include "runtime.hpp"

namespace nodus::detail {

TimerService::TimerService(Runtime& rt, transport::Clock* clock) : rt_(rt), clock_(clock) {}

TimerService::~TimerService() {
  stop();
  MutexLock lock(mu_);  // nobody else is left: for the analysis
  for (Entry* e : heap_) delete e;
}

void TimerService::start() {
  if (clock_) return;  // step() fires them
  thread_ = std::thread([this] { run(); });
}

std::size_t TimerService::fire_due() {
  std::vector<Entry*> due;
  {
    MutexLock lock(mu_);
    if (stop_) return 0;
    const Clock::time_point t = now();
    while (!heap_.empty() && heap_.front()->when <= t) {
      Entry* e = heap_.front();
      heap_remove(e);
      by_ref_.erase(e->ref.id);
      due.push_back(e);
    }
  }
  for (Entry* e : due) {
    rt_.deliver(e->to, new Envelope(e->kind, Pid{}, e->ref, std::move(e->msg)));
    delete e;
  }
  return due.size();
}

void TimerService::stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::size_t TimerService::size() const {
  MutexLock lock(mu_);
  return heap_.size();
}

void TimerService::add(Clock::time_point when, const Pid& to, Kind kind, const Ref& ref,
                       Message msg) {
  auto* e = new Entry{when, 0, to, kind, ref, std::move(msg)};
  bool wake = false;
  {
    MutexLock lock(mu_);
    heap_push(e);
    by_ref_.emplace(ref.id, e);
    if (when < wake_at_) {
      wake_at_ = when;
      wake = true;
    }
  }
  if (clock_) {
    clock_->wake_at(when);
  } else if (wake) {
    cv_.notify_one();
  }
}

std::optional<std::chrono::milliseconds> TimerService::cancel(std::uint64_t ref_id) {
  Entry* e = nullptr;
  {
    MutexLock lock(mu_);
    auto it = by_ref_.find(ref_id);
    if (it == by_ref_.end()) return std::nullopt;
    e = it->second;
    by_ref_.erase(it);
    heap_remove(e);
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(e->when - now());
  delete e;
  return left.count() < 0 ? std::chrono::milliseconds(0) : left;
}

void TimerService::run() {
  MutexLock lock(mu_);
  std::vector<Entry*> due;
  while (!stop_) {
    Clock::time_point now = Clock::now();
    while (!heap_.empty() && heap_.front()->when <= now) {
      Entry* e = heap_.front();
      heap_remove(e);
      by_ref_.erase(e->ref.id);
      due.push_back(e);
    }
    if (!due.empty()) {
      mu_.unlock();  // delivering may add timers
      for (Entry* e : due) {
        rt_.deliver(e->to, new Envelope(e->kind, Pid{}, e->ref, std::move(e->msg)));
        delete e;
      }
      due.clear();
      mu_.lock();
      continue;
    }
    wake_at_ = heap_.empty() ? Clock::time_point::max() : heap_.front()->when;
    if (wake_at_ == Clock::time_point::max()) {
      cv_.wait();
    } else {
      cv_.wait_until(wake_at_);
    }
  }
}

void TimerService::heap_push(Entry* e) {
  e->index = heap_.size();
  heap_.push_back(e);
  sift_up(e->index);
}

void TimerService::heap_remove(Entry* e) {
  std::size_t i = e->index;
  std::size_t last = heap_.size() - 1;
  if (i != last) {
    swap_at(i, last);
    heap_.pop_back();
    sift_down(i);
    sift_up(i);
  } else {
    heap_.pop_back();
  }
}

void TimerService::swap_at(std::size_t a, std::size_t b) {
  std::swap(heap_[a], heap_[b]);
  heap_[a]->index = a;
  heap_[b]->index = b;
}

void TimerService::sift_up(std::size_t i) {
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (!(heap_[i]->when < heap_[parent]->when)) break;
    swap_at(i, parent);
    i = parent;
  }
}

void TimerService::sift_down(std::size_t i) {
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && heap_[l]->when < heap_[m]->when) m = l;
    if (r < n && heap_[r]->when < heap_[m]->when) m = r;
    if (m == i) break;
    swap_at(i, m);
    i = m;
  }
}

}  // namespace nodus::detail
