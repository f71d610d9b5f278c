#include "ops/cuda/point_nms_kernels.h"

namespace tinyfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  return static_cast<int>((n + kThreads - 1) / kThreads);
}

__global__ void count_point_suppressors_kernel(PointSweep sweep, int32_t* counts) {
  const int32_t xp = blockIdx.x * blockDim.x + threadIdx.x;
  if (xp < sweep.n) {
    sweep.visit(xp, [&](int32_t lower, int32_t) { atomicAdd(counts + lower, 1); });
  }
}

__global__ void write_point_suppressors_kernel(
    PointSweep sweep, const int64_t* offsets, int32_t* cursors, int32_t* edges, int64_t capacity) {
  const int32_t xp = blockIdx.x * blockDim.x + threadIdx.x;
  if (xp < sweep.n) {
    sweep.visit(xp, [&](int32_t lower, int32_t higher) {
      const int64_t at = offsets[lower] + atomicAdd(cursors + lower, 1);
      if (at < capacity) {
        edges[at] = higher;
      }
    });
  }
}

}  // namespace

void launch_count_point_suppressors(const PointSweep& sweep, int32_t* counts, cudaStream_t stream) {
  count_point_suppressors_kernel<<<blocks_for(sweep.n), kThreads, 0, stream>>>(sweep, counts);
}

void launch_write_point_suppressors(const PointSweep& sweep,
                                    const int64_t* offsets,
                                    int32_t* cursors,
                                    int32_t* edges,
                                    int64_t capacity,
                                    cudaStream_t stream) {
  write_point_suppressors_kernel<<<blocks_for(sweep.n), kThreads, 0, stream>>>(sweep, offsets, cursors, edges,
                                                                               capacity);
}

}  // namespace cuda
}  // namespace tinyfast
