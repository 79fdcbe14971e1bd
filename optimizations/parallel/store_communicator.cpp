#include "optimizations/parallel/store_communicator.h"

#include <c10/util/Exception.h>

#include <cstring>
#include <thread>

namespace ditbench {

namespace {

// What a rank's message holds: the operation it was sent for (so that ranks calling different
// collectives fail with both names) and the tensor: dtype, shape, then the bytes.
std::vector<uint8_t> encode(const std::string& op, const at::Tensor& tensor) {
  const at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
  const auto op_len = static_cast<uint32_t>(op.size());
  const auto dtype = static_cast<int32_t>(t.scalar_type());
  const auto ndim = static_cast<int32_t>(t.dim());
  const size_t data = t.numel() * t.element_size();
  std::vector<uint8_t> out(4 + op.size() + 4 + 4 + 8 * static_cast<size_t>(ndim) + data);
  uint8_t* p = out.data();
  auto put = [&p](const void* src, size_t n) {
    if (n) std::memcpy(p, src, n);
    p += n;
  };
  put(&op_len, 4);
  put(op.data(), op.size());
  put(&dtype, 4);
  put(&ndim, 4);
  for (int64_t d : t.sizes()) put(&d, 8);
  put(t.data_ptr(), data);
  return out;
}

struct Message {
  std::string op;
  at::Tensor tensor;
};

Message decode(const std::vector<uint8_t>& bytes, const std::string& what) {
  size_t at = 0;
  auto take = [&](void* dst, size_t n) {
    if (at + n > bytes.size()) throw CommError(what + ": the store holds a truncated message");
    if (n) std::memcpy(dst, bytes.data() + at, n);
    at += n;
  };
  Message m;
  uint32_t op_len = 0;
  take(&op_len, 4);
  m.op.resize(op_len);
  take(m.op.data(), op_len);
  int32_t dtype = 0, ndim = 0;
  take(&dtype, 4);
  take(&ndim, 4);
  std::vector<int64_t> sizes(static_cast<size_t>(std::max(ndim, 0)));
  for (auto& d : sizes) take(&d, 8);
  m.tensor = at::empty(sizes, at::TensorOptions().dtype(static_cast<at::ScalarType>(dtype)));
  take(m.tensor.data_ptr(), m.tensor.numel() * m.tensor.element_size());
  return m;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

LaunchStore::LaunchStore(c10::intrusive_ptr<c10d::Store> store, std::string prefix, int rank)
    : store_(std::move(store)), prefix_(std::move(prefix)), rank_(rank) {}

template <typename Fn>
auto LaunchStore::call(const std::string& op, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    throw CommError(
        "rank " + std::to_string(rank_) + ": " + op +
        ": lost the launch's store (rank 0 serves it): " + first_line(e.what_without_backtrace()));
  }
}

void LaunchStore::set(const std::string& name, const std::vector<uint8_t>& value,
                      const std::string& op) {
  call(op, [&] { store_->set(key(name), value); });
}

std::vector<uint8_t> LaunchStore::get(const std::string& name, const std::string& op) {
  return call(op, [&] { return store_->get(key(name)); });
}

std::vector<std::vector<uint8_t>> LaunchStore::get_all(const std::vector<std::string>& names,
                                                       const std::string& op) {
  std::vector<std::string> keys;
  for (const auto& n : names) keys.push_back(key(n));
  return call(op, [&] { return store_->multiGet(keys); });
}

int64_t LaunchStore::add(const std::string& name, int64_t delta, const std::string& op) {
  return call(op, [&] { return store_->add(key(name), delta); });
}

bool LaunchStore::exists(const std::vector<std::string>& names, const std::string& op) {
  std::vector<std::string> keys;
  for (const auto& n : names) keys.push_back(key(n));
  return call(op, [&] { return store_->check(keys); });
}

void LaunchStore::erase(const std::string& name) {
  try {
    store_->deleteKey(key(name));
  } catch (const c10::Error&) {
    // Cleanup only: a lost store shows up at the next operation that needs it.
  }
}

void LaunchStore::publish_failure(int failed_rank, const std::string& reason) {
  const std::string text = std::to_string(failed_rank) + "\n" + reason;
  try {
    store_->compareSet(key("abort"), {}, std::vector<uint8_t>(text.begin(), text.end()));
  } catch (const c10::Error&) {
    // The store is gone (rank 0 has exited): every rank finds that out by itself.
  }
}

std::optional<std::pair<int, std::string>> LaunchStore::failure(const std::string& op) {
  if (!exists({"abort"}, op)) return std::nullopt;
  const auto bytes = get("abort", op);
  const std::string text(bytes.begin(), bytes.end());
  const size_t nl = text.find('\n');
  int failed = -1;
  try {
    failed = std::stoi(text.substr(0, nl));
  } catch (const std::exception&) {
  }
  return std::make_pair(failed, nl == std::string::npos ? text : text.substr(nl + 1));
}

void LaunchStore::check_failure(const std::string& op) {
  if (auto f = failure(op)) {
    throw CommAborted(f->first, "rank " + std::to_string(rank_) + ": " + op +
                                    " aborted because rank " + std::to_string(f->first) +
                                    " failed: " + f->second);
  }
}

void LaunchStore::wait_until(const std::string& op, const std::function<bool()>& ready,
                             const std::function<std::vector<int>()>& missing,
                             std::optional<std::chrono::milliseconds> timeout) {
  const auto started = std::chrono::steady_clock::now();
  // Fast at first (a collective's peers are usually close behind), then gentler on the server.
  auto pause = std::chrono::microseconds(50);
  const auto longest = timeout ? std::chrono::microseconds(5000) : std::chrono::microseconds(50000);
  while (!ready()) {
    check_failure(op);
    if (timeout && std::chrono::steady_clock::now() - started > *timeout) {
      std::string msg = "rank " + std::to_string(rank_) + " timed out in " + op + " after " +
                        describe_seconds(*timeout) + " (waiting for rank";
      const std::vector<int> late = missing();
      for (size_t i = 0; i < late.size(); ++i) msg += (i ? ", " : " ") + std::to_string(late[i]);
      msg += ")";
      publish_failure(rank_, msg);
      throw CommError(msg);
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, longest);
  }
}

StoreCommunicator::StoreCommunicator(std::shared_ptr<LaunchStore> store, std::string name,
                                     std::vector<int> global_ranks, int rank, CommOptions options)
    : store_(std::move(store)),
      name_(std::move(name)),
      global_ranks_(std::move(global_ranks)),
      rank_(rank),
      options_(options) {
  if (rank < 0 || rank >= size()) {
    throw CommError("store communicator: rank " + std::to_string(rank) + " is outside a group of " +
                    std::to_string(size()));
  }
}

std::string StoreCommunicator::collective_key(uint64_t seq, int rank) const {
  return name_ + "/c" + std::to_string(seq) + "/" + std::to_string(rank);
}

std::string StoreCommunicator::message_key(int src, int dst, uint64_t n) const {
  return name_ + "/m" + std::to_string(src) + "-" + std::to_string(dst) + "/" + std::to_string(n);
}

std::vector<at::Tensor> StoreCommunicator::exchange(const char* op,
                                                    const at::Tensor& contribution) {
  const uint64_t seq = next_collective_++;
  store_->check_failure(op);
  store_->set(collective_key(seq, rank_), encode(op, contribution), op);
  std::vector<std::string> keys;
  for (int r = 0; r < size(); ++r) keys.push_back(collective_key(seq, r));
  store_->wait_until(
      op, [&] { return store_->exists(keys, op); },
      [&] {
        std::vector<int> late;
        for (int r = 0; r < size(); ++r)
          if (!store_->exists({keys[static_cast<size_t>(r)]}, op))
            late.push_back(global_rank_of(r));
        return late;
      },
      options_.timeout);
  const auto values = store_->get_all(keys, op);
  // Every member has deposited this collective, so each has read the previous one: this rank's
  // key of the previous collective is no longer needed.
  if (seq > 0) store_->erase(collective_key(seq - 1, rank_));
  std::vector<at::Tensor> inputs;
  for (int r = 0; r < size(); ++r) {
    Message m = decode(values[static_cast<size_t>(r)], op);
    if (m.op != op) {
      throw CommError("rank " + std::to_string(global_rank()) + " called " + op +
                      " as collective #" + std::to_string(seq) + " of its group while rank " +
                      std::to_string(global_rank_of(r)) + " called " + m.op);
    }
    inputs.push_back(std::move(m.tensor));
  }
  return inputs;
}

void StoreCommunicator::send(const at::Tensor& tensor, int dst) {
  if (dst < 0 || dst >= size()) {
    throw CommError("send: destination rank " + std::to_string(dst) + " is outside a group of " +
                    std::to_string(size()));
  }
  const std::string op = "send to rank " + std::to_string(global_rank_of(dst));
  store_->check_failure(op);
  store_->set(message_key(rank_, dst, sent_[dst]++), encode("send", tensor), op);
}

void StoreCommunicator::recv(at::Tensor& tensor, int src) {
  if (src < 0 || src >= size()) {
    throw CommError("recv: source rank " + std::to_string(src) + " is outside a group of " +
                    std::to_string(size()));
  }
  const std::string op = "recv from rank " + std::to_string(global_rank_of(src));
  const std::string key = message_key(src, rank_, received_[src]++);
  store_->wait_until(
      op, [&] { return store_->exists({key}, op); },
      [&] { return std::vector<int>{global_rank_of(src)}; }, options_.timeout);
  Message m = decode(store_->get(key, op), op);
  store_->erase(key);
  if (m.tensor.sizes() != tensor.sizes() || m.tensor.scalar_type() != tensor.scalar_type()) {
    throw CommError("recv: rank " + std::to_string(global_rank_of(src)) + " sent " +
                    describe_tensor(m.tensor) + " but rank " + std::to_string(global_rank()) +
                    " expects " + describe_tensor(tensor));
  }
  tensor.copy_(m.tensor);
}

std::unique_ptr<Communicator> StoreCommunicator::make_subgroup(uint64_t split, int color,
                                                               std::vector<int> global_ranks,
                                                               int new_rank) {
  return std::make_unique<StoreCommunicator>(
      store_, name_ + "/s" + std::to_string(split) + "c" + std::to_string(color),
      std::move(global_ranks), new_rank, options_);
}

void StoreCommunicator::abort(const std::string& reason) {
  store_->publish_failure(global_rank(), reason);
}

}  // namespace ditbench
