#include "optimizations/parallel/shared_work.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace ditbench {

namespace {

constexpr int64_t kMaxDims = 8;
constexpr int64_t kRow = 2 + kMaxDims;  // a table row: dims, dtype, sizes (0: an empty slot)
constexpr int64_t kAlign = 16;          // bytes: every item starts aligned for any dtype

int64_t item_bytes(const at::Tensor& row) {  // row: [kRow] int64 on the CPU
  const auto dims = row[0].item<int64_t>();
  if (dims == 0) return 0;
  int64_t bytes = c10::elementSize(static_cast<at::ScalarType>(row[1].item<int64_t>()));
  for (int64_t d = 0; d < dims; ++d) bytes *= row[2 + d].item<int64_t>();
  return bytes;
}

}  // namespace

std::vector<at::Tensor> compute_shared(Communicator& group, int64_t n, const at::Device& device,
                                       const std::function<at::Tensor(int64_t k)>& item) {
  const int64_t world = group.size(), rank = group.rank();
  const int64_t slots = (n + world - 1) / world;  // items per rank at most
  std::vector<at::Tensor> mine;                   // items rank, rank + world, ...
  at::Tensor table = at::zeros({std::max<int64_t>(slots, 1), kRow}, at::kLong);
  for (int64_t k = rank, slot = 0; k < n; k += world, ++slot) {
    at::Tensor t = item(k).to(device).contiguous();
    if (t.dim() == 0 || t.dim() > kMaxDims) {
      throw std::invalid_argument("compute_shared: item " + std::to_string(k) + " has " +
                                  std::to_string(t.dim()) + " dims (1 to " +
                                  std::to_string(kMaxDims) + " supported)");
    }
    table[slot][0] = t.dim();
    table[slot][1] = static_cast<int64_t>(t.scalar_type());
    for (int64_t d = 0; d < t.dim(); ++d) table[slot][2 + d] = t.size(d);
    mine.push_back(std::move(t));
  }
  // Every rank's table, then its items as bytes padded to the largest: [world * slots, ...].
  const at::Tensor tables = group.all_gather(table.to(device)).cpu();
  int64_t stride = 0;
  for (int64_t row = 0; row < tables.size(0); ++row) {
    stride = std::max(stride, item_bytes(tables[row]));
  }
  stride = (stride + kAlign - 1) / kAlign * kAlign;
  at::Tensor payload = at::zeros({std::max<int64_t>(slots, 1), std::max<int64_t>(stride, kAlign)},
                                 at::TensorOptions().dtype(at::kByte).device(device));
  for (size_t slot = 0; slot < mine.size(); ++slot) {
    at::Tensor bytes = mine[slot].view({-1}).view(at::kByte);
    payload[static_cast<int64_t>(slot)].narrow(0, 0, bytes.numel()).copy_(bytes);
  }
  const at::Tensor all = group.all_gather(payload);  // [world * max(slots, 1), stride]
  const int64_t rows_per_rank = std::max<int64_t>(slots, 1);

  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const int64_t row = (k % world) * rows_per_rank + k / world;
    const at::Tensor shape = tables[row];
    const auto dims = shape[0].item<int64_t>();
    std::vector<int64_t> sizes;
    for (int64_t d = 0; d < dims; ++d) sizes.push_back(shape[2 + d].item<int64_t>());
    const auto dtype = static_cast<at::ScalarType>(shape[1].item<int64_t>());
    out.push_back(all[row].narrow(0, 0, item_bytes(shape)).view(dtype).view(sizes));
  }
  return out;
}

}  // namespace ditbench
