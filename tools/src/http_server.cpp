#include "http_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>

#include "nodus/transport/detail/mutex.hpp"

namespace nodus::tools {

namespace {

using Clock = std::chrono::steady_clock;

void close_fd(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

// Waits until `fd` is ready for `events` or `deadline` passes; true when ready.
bool wait_until(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc > 0) return true;  // ready, or an error the next read/write reports
    if (rc < 0 && errno != EINTR) return false;
  }
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (rc != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    port = ntohs(in->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    port = ntohs(in6->sin6_port);
  }
  ip = text;
}

// A connection's socket for cpp-httplib's request parser: it first replays the request head the
// reader thread already took off the socket, then reads the socket; every read and write of the
// request shares one deadline. The socket is non-blocking.
class ReplayStream : public httplib::Stream {
 public:
  ReplayStream(int fd, std::string head, Clock::time_point deadline)
      : fd_(fd), head_(std::move(head)), deadline_(deadline) {}

  bool is_readable() const override {
    return pos_ < head_.size() || wait_until(fd_, POLLIN, deadline_);
  }
  bool is_writable() const override { return wait_until(fd_, POLLOUT, deadline_); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ < head_.size()) {
      const std::size_t n = std::min(size, head_.size() - pos_);
      std::memcpy(ptr, head_.data() + pos_, n);
      pos_ += n;
      return static_cast<ssize_t>(n);
    }
    for (;;) {
      if (!wait_until(fd_, POLLIN, deadline_)) return -1;
      const ssize_t n = ::recv(fd_, ptr, size, 0);
      if (n >= 0 || (errno != EINTR && errno != EAGAIN)) return n;
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    for (;;) {
      if (!wait_until(fd_, POLLOUT, deadline_)) return -1;
      const ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
      if (n >= 0 || (errno != EINTR && errno != EAGAIN)) return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  int fd_;
  std::string head_;
  std::size_t pos_ = 0;
  Clock::time_point deadline_;
};

// cpp-httplib's accept loop hands each connection to its task queue; this one runs the task at
// once, on the accept thread, and the task (process_and_close_socket below) only passes the
// socket on to the reader thread.
class InlineQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

}  // namespace

class HttpServer::Impl {
 public:
  // cpp-httplib's server with its accept loop and request parser, and our connection handling.
  class Server : public httplib::Server {
   public:
    explicit Server(Impl& impl) : impl_(impl) {}
    // Answers one request whose head is in `strm`, then the connection is closed.
    void serve(httplib::Stream& strm) {
      bool closed = false;
      (void)process_request(strm, /*close_connection=*/true, closed, nullptr);
    }

    // cpp-httplib 0.11 listens with a backlog of 5: a burst of connections (probes, scrapes,
    // idle clients) overflows it and each dropped SYN costs its client a 1 s retransmit. Linux
    // takes a second listen() on a listening socket as a new backlog.
    bool widen_backlog() { return ::listen(svr_sock_.load(), SOMAXCONN) == 0; }

   private:
    // Overrides cpp-httplib's per-connection entry (a virtual it calls for each accepted socket).
    bool process_and_close_socket(socket_t sock) override {
      impl_.admit(sock);
      return true;
    }
    Impl& impl_;
  };

  Impl() : server_(*this) {}
  ~Impl() { close(); }

  bool start(const std::string& host, int port, std::vector<Route> routes) {
    server_.new_task_queue = [] { return new InlineQueue(); };
    server_.set_socket_options([](socket_t s) {
      int one = 1;
      ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    });
    server_.set_payload_max_length(64 * 1024);
    for (Route& r : routes) {
      auto get = std::move(r.get);
      server_.Get(r.path, [get](const httplib::Request&, httplib::Response& res) {
        auto [body, type] = get();
        res.set_content(body, type.c_str());
      });
    }
    wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_ < 0 || !server_.bind_to_port(host.c_str(), port) || !server_.widen_backlog()) {
      return false;
    }
    reader_ = std::thread([this] { read_heads(); });
    for (std::size_t i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { answer(); });
    listener_ = std::thread([this] { server_.listen_after_bind(); });
    return true;
  }

  void close() {
    if (closed_.exchange(true)) return;
    server_.stop();
    if (listener_.joinable()) listener_.join();
    {
      detail::MutexLock lock(mu_);
      stop_ = true;
    }
    ready_cv_.notify_all();
    wake();
    if (reader_.joinable()) reader_.join();
    for (std::thread& w : workers_) {
      if (w.joinable()) w.join();
    }
    for (const Waiting& w : waiting_) close_fd(w.fd);
    waiting_.clear();
    detail::MutexLock lock(mu_);  // no other thread is left; the analysis wants it all the same
    for (int fd : incoming_) close_fd(fd);
    for (const Ready& r : ready_) close_fd(r.fd);
    incoming_.clear();
    ready_.clear();
    if (wake_ >= 0) ::close(wake_);
    wake_ = -1;
  }

 private:
  struct Waiting {
    int fd;
    std::string head;
    Clock::time_point deadline;
  };
  struct Ready {
    int fd = -1;
    std::string head;
  };

  // On the accept thread: a new connection, for the reader.
  void admit(int fd) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    {
      detail::MutexLock lock(mu_);
      if (!stop_) {
        incoming_.push_back(fd);
        fd = -1;
      }
    }
    if (fd >= 0) close_fd(fd);
    wake();
  }

  void wake() {
    const std::uint64_t one = 1;
    if (wake_ >= 0) (void)!::write(wake_, &one, sizeof(one));
  }

  static bool head_complete(const std::string& s) {
    return s.find("\r\n\r\n") != std::string::npos || s.find("\n\n") != std::string::npos;
  }

  // True when the request announces a body (Content-Length other than 0, or Transfer-Encoding).
  // /metrics and /health take none, and a worker must never wait for one.
  static bool announces_body(const std::string& head) {
    std::string h = head;
    std::transform(h.begin(), h.end(), h.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (h.find("\ntransfer-encoding:") != std::string::npos) return true;
    const auto at = h.find("\ncontent-length:");
    if (at == std::string::npos) return false;
    const auto value = h.find_first_not_of(" \t", at + 16);
    return value != std::string::npos && h[value] != '0';
  }

  // Answers 400 without waiting (the answer fits any socket buffer) and closes.
  static void refuse(int fd) {
    static constexpr char kBadRequest[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    (void)!::send(fd, kBadRequest, sizeof(kBadRequest) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close_fd(fd);
  }

  // The reader thread: collects request heads without blocking on any one connection.
  void read_heads() {
    std::vector<pollfd> fds;
    for (;;) {
      {
        detail::MutexLock lock(mu_);
        if (stop_) return;
        for (int fd : incoming_) waiting_.push_back({fd, {}, Clock::now() + kHeadDeadline});
        incoming_.clear();
      }
      if (waiting_.size() > kMaxWaiting) {  // the oldest make room
        const auto excess = static_cast<std::ptrdiff_t>(waiting_.size() - kMaxWaiting);
        for (auto it = waiting_.begin(); it != waiting_.begin() + excess; ++it) close_fd(it->fd);
        waiting_.erase(waiting_.begin(), waiting_.begin() + excess);
      }
      auto next = Clock::now() + std::chrono::seconds(1);
      fds.assign(1, pollfd{wake_, POLLIN, 0});
      for (const Waiting& w : waiting_) {
        fds.push_back(pollfd{w.fd, POLLIN, 0});
        next = std::min(next, w.deadline);
      }
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
      const int rc = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<long long>(0, ms)));
      if (rc < 0 && errno != EINTR) return;
      if (fds[0].revents & POLLIN) {
        std::uint64_t n;
        (void)!::read(wake_, &n, sizeof(n));
      }
      const auto now = Clock::now();
      std::vector<Waiting> still;
      still.reserve(waiting_.size());
      for (std::size_t i = 0; i < waiting_.size(); ++i) {
        Waiting& w = waiting_[i];
        bool done = false;  // handed on or closed
        if (fds[i + 1].revents != 0) {
          char buf[4096];
          const std::size_t room = kMaxHead - w.head.size();
          const ssize_t n = ::recv(w.fd, buf, std::min(room, sizeof(buf)), 0);
          if (n > 0) {
            w.head.append(buf, static_cast<std::size_t>(n));
            if (head_complete(w.head)) {
              if (announces_body(w.head)) {
                refuse(w.fd);
              } else {
                hand_on(Ready{w.fd, std::move(w.head)});
              }
              done = true;
            } else if (w.head.size() >= kMaxHead) {
              close_fd(w.fd);  // a head too large for /metrics or /health
              done = true;
            }
          } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            close_fd(w.fd);
            done = true;
          }
        }
        if (!done && now >= w.deadline) {
          close_fd(w.fd);
          done = true;
        }
        if (!done) still.push_back(std::move(w));
      }
      waiting_ = std::move(still);
    }
  }

  void hand_on(Ready r) {
    {
      detail::MutexLock lock(mu_);
      if (!stop_ && ready_.size() < kMaxReady) {
        ready_.push_back(std::move(r));
        r.fd = -1;
      }
    }
    if (r.fd >= 0) {
      close_fd(r.fd);  // more complete requests than the workers can take: shed this one
    } else {
      ready_cv_.notify_one();
    }
  }

  // A worker thread: answers complete requests, one at a time.
  void answer() {
    for (;;) {
      Ready r;
      {
        detail::MutexLock lock(mu_);
        while (!stop_ && ready_.empty()) ready_cv_.wait();
        if (stop_) return;
        r = std::move(ready_.front());
        ready_.pop_front();
      }
      ReplayStream s(r.fd, std::move(r.head), Clock::now() + kRequestDeadline);
      server_.serve(s);
      close_fd(r.fd);
    }
  }

  Server server_;
  std::atomic<bool> closed_{false};
  int wake_ = -1;  // eventfd: wakes the reader
  std::thread listener_, reader_;
  std::vector<std::thread> workers_;
  std::vector<Waiting> waiting_;  // the reader's own (then close()'s, once the reader ended)

  // Guards what the accept thread, the reader and the workers hand each other.
  detail::Mutex mu_;
  bool stop_ NODUS_GUARDED_BY(mu_) = false;
  std::vector<int> incoming_ NODUS_GUARDED_BY(mu_);  // accepted, not yet seen by the reader
  std::deque<Ready> ready_ NODUS_GUARDED_BY(mu_);    // complete heads, for the workers
  detail::CondVar ready_cv_{mu_};                    // ready_ has more, or stop_
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { close(); }

void HttpServer::close() {
  if (impl_) impl_->close();
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& host_port,
                                                      std::vector<Route> routes) {
  const auto colon = host_port.rfind(':');
  int port = 0;
  if (colon != std::string::npos) {
    for (char c : host_port.substr(colon + 1)) {
      if (c < '0' || c > '9' || port > 65535) {
        port = -1;
        break;
      }
      port = port * 10 + (c - '0');
    }
  }
  if (colon == std::string::npos || colon == 0 || port <= 0 || port > 65535) {
    return Status(ErrorCode::kBadConfig, "\"" + host_port + "\" is not HOST:PORT");
  }
  auto impl = std::make_unique<Impl>();
  if (!impl->start(host_port.substr(0, colon), port, std::move(routes))) {
    return Status(ErrorCode::kBadConfig,
                  "cannot listen on " + host_port + " (in use, or not an address of this machine)");
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

}  // namespace nodus::tools
