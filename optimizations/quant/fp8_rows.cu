#include "optimizations/quant/fp8_rows.cuh"
#include "optimizations/quant/fp8_rows_cuda.h"

namespace ditbench {
namespace {

using fp8_rows::to_e4m3;
using fp8_rows::to_float;

// Rows of T read with 16-byte streaming loads (each byte is read once).
template <typename T>
struct StridedRows {
  using Elem = T;
  const T* x;
  int64_t row_stride;  // elements

  __device__ __forceinline__ uint4 load(int64_t row, int vec) const {
    return __ldcs(reinterpret_cast<const uint4*>(x + row * row_stride) + vec);
  }
};

// The general case (rows that are not 16-byte vectors, or too long to hold): one block per row,
// read once for the amax and again, mostly from cache, to quantize.
constexpr int kScalarThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kScalarThreads)
    quantize_rows_fp8_scalar_kernel(const T* __restrict__ x, int64_t cols, int64_t row_stride,
                                    __nv_fp8_storage_t* __restrict__ out,
                                    float* __restrict__ scale) {
  __shared__ float partial[fp8_rows::kMaxWarps];
  const int64_t row = blockIdx.x;
  const T* in = x + row * row_stride;
  __nv_fp8_storage_t* row_out = out + row * cols;
  float amax = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kScalarThreads) {
    amax = fmaxf(amax, fabsf(to_float(in[c])));
  }
  const float s = fp8_rows::scale_of(fp8_rows::block_max(amax, partial));
  if (threadIdx.x == 0) scale[row] = s;
  for (int64_t c = threadIdx.x; c < cols; c += kScalarThreads)
    row_out[c] = to_e4m3(to_float(in[c]), s);
}

template <typename T>
bool launch(const void* x, int64_t rows, int64_t cols, int64_t row_stride, void* out, float* scale,
            cudaStream_t stream) {
  if (rows == 0 || cols == 0) return true;
  constexpr int kVec = 16 / sizeof(T);
  const bool vectors = fp8_rows::aligned16(x) && fp8_rows::aligned16(out) && cols % kVec == 0 &&
                       row_stride % kVec == 0;
  if (vectors && fp8_rows::launch_held_rows(StridedRows<T>{static_cast<const T*>(x), row_stride},
                                            rows, cols / kVec, out, scale, stream)) {
    return true;
  }
  if (rows > 0x7fffffff || !fp8_rows::has_image<quantize_rows_fp8_scalar_kernel<T>>()) return false;
  quantize_rows_fp8_scalar_kernel<T><<<static_cast<unsigned>(rows), kScalarThreads, 0, stream>>>(
      static_cast<const T*>(x), cols, row_stride, static_cast<__nv_fp8_storage_t*>(out), scale);
  return true;
}

}  // namespace

bool quantize_rows_fp8_cuda(const void* x, Fp8RowsInput dtype, int64_t rows, int64_t cols,
                            int64_t row_stride, void* out, float* scale, cudaStream_t stream) {
  switch (dtype) {
    case Fp8RowsInput::float32:
      return launch<float>(x, rows, cols, row_stride, out, scale, stream);
    case Fp8RowsInput::float16:
      return launch<__half>(x, rows, cols, row_stride, out, scale, stream);
    case Fp8RowsInput::bfloat16:
      return launch<__nv_bfloat16>(x, rows, cols, row_stride, out, scale, stream);
  }
  return false;
}

}  // namespace ditbench
