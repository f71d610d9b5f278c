#include <cub/block/block_scan.cuh>

#include "ops/cuda/batched_nms_kernels.h"

namespace tinyfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxResolveBlocks = 1024;

enum : int8_t { kUndecided = 0, kKept = 1, kSuppressed = 2 };

int blocks_for(int64_t n) {
  return static_cast<int>((n + kThreads - 1) / kThreads);
}

// Pass 1: how many boxes can suppress each box.
template <typename T>
__global__ void count_suppressors_kernel(NmsSweep<T> sweep, int32_t* counts) {
  const int32_t xp = blockIdx.x * blockDim.x + threadIdx.x;
  if (xp < sweep.n) {
    sweep.visit(xp, [&](int32_t lower, int32_t) { atomicAdd(counts + lower, 1); });
  }
}

// Pass 2: the suppressors of box r go to edges[offsets[r] .. offsets[r] + counts[r]), in any order.
// Writes past `capacity` are dropped; the host compares the total with the capacity.

template <typename T>
__global__ void write_suppressors_kernel(
    NmsSweep<T> sweep, const int64_t* offsets, int32_t* cursors, int32_t* edges, int64_t capacity) {
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

__global__ void scatter_group_starts_kernel(const int32_t* starts_so_far, int32_t n, int32_t* group_starts) {
  const int32_t r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) {
    return;
  }
  const bool starts_group = r == 0 || starts_so_far[r] != starts_so_far[r - 1];
  if (starts_group) {
    group_starts[starts_so_far[r] - 1] = r;
  }
  if (r == n - 1) {
    group_starts[starts_so_far[r]] = n;
  }
}

// A box is decided once all its suppressors are (they rank higher): kept iff none of them is kept.
// Each round decides at least the highest-ranked undecided box, so the loop ends; in practice after a
// few rounds, as suppression chains are short. Only this block writes the group's states.
__device__ void resolve_group(int32_t begin,
                              int32_t end,
                              const int64_t* offsets,
                              const int32_t* counts,
                              const int32_t* edges,
                              int64_t capacity,
                              volatile int8_t* state) {
  __shared__ int any_undecided;
  while (true) {
    if (threadIdx.x == 0) {
      any_undecided = 0;
    }
    __syncthreads();
    for (int32_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
      if (state[r] != kUndecided) {
        continue;
      }
      int8_t verdict = kKept;
      // Past the capacity the lists were not written; the host then rebuilds them and runs this again.
      const int64_t last = min(offsets[r] + counts[r], capacity);
      for (int64_t e = offsets[r]; e < last; ++e) {
        const int8_t suppressor = state[edges[e]];
        if (suppressor == kKept) {
          verdict = kSuppressed;
          break;
        }
        if (suppressor == kUndecided) {
          verdict = kUndecided;
        }
      }
      if (verdict == kUndecided) {
        any_undecided = 1;
      } else {
        state[r] = verdict;
      }
    }
    __syncthreads();
    const bool done = any_undecided == 0;
    __syncthreads();
    if (done) {
      return;
    }
  }
}

__device__ void mark_kept(int32_t begin,
                          int32_t end,
                          int64_t max_per_group,
                          const int64_t* order,
                          const volatile int8_t* state,
                          bool* kept_by_index) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ int64_t kept_before_chunk;
  if (threadIdx.x == 0) {
    kept_before_chunk = 0;
  }
  __syncthreads();
  for (int32_t chunk = begin; chunk < end; chunk += kThreads) {
    const int32_t r = chunk + threadIdx.x;
    const int is_kept = (r < end && state[r] == kKept) ? 1 : 0;
    int kept_before_in_chunk = 0;
    int kept_in_chunk = 0;
    BlockScan(scan_storage).ExclusiveSum(is_kept, kept_before_in_chunk, kept_in_chunk);
    if (is_kept && (max_per_group < 0 || kept_before_chunk + kept_before_in_chunk < max_per_group)) {
      kept_by_index[order[r]] = true;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      kept_before_chunk += kept_in_chunk;
    }
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kThreads) resolve_groups_kernel(const int64_t* offsets,
                                                                  const int32_t* counts,
                                                                  const int32_t* edges,
                                                                  int64_t capacity,
                                                                  const int32_t* group_starts,
                                                                  const int32_t* starts_so_far,
                                                                  int32_t n,
                                                                  int64_t max_per_group,
                                                                  const int64_t* order,
                                                                  int8_t* state,
                                                                  bool* kept_by_index) {
  const int32_t num_groups = starts_so_far[n - 1];
  for (int32_t g = blockIdx.x; g < num_groups; g += gridDim.x) {
    const int32_t begin = group_starts[g];
    const int32_t end = group_starts[g + 1];
    resolve_group(begin, end, offsets, counts, edges, capacity, state);
    mark_kept(begin, end, max_per_group, order, state, kept_by_index);
  }
}

__global__ void compact_kept_kernel(const bool* kept_by_index,
                                    const int64_t* kept_so_far,
                                    int64_t n,
                                    int64_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && kept_by_index[i]) {
    out[kept_so_far[i] - 1] = i;
  }
}

}  // namespace

template <typename T>
void launch_count_suppressors(const NmsSweep<T>& sweep, int32_t* counts, cudaStream_t stream) {
  count_suppressors_kernel<T><<<blocks_for(sweep.n), kThreads, 0, stream>>>(sweep, counts);
}

template <typename T>
void launch_write_suppressors(const NmsSweep<T>& sweep,
                              const int64_t* offsets,
                              int32_t* cursors,
                              int32_t* edges,
                              int64_t capacity,
                              cudaStream_t stream) {
  write_suppressors_kernel<T>
      <<<blocks_for(sweep.n), kThreads, 0, stream>>>(sweep, offsets, cursors, edges, capacity);
}

template void launch_count_suppressors<float>(const NmsSweep<float>&, int32_t*, cudaStream_t);
template void launch_count_suppressors<double>(const NmsSweep<double>&, int32_t*, cudaStream_t);
template void launch_write_suppressors<float>(
    const NmsSweep<float>&, const int64_t*, int32_t*, int32_t*, int64_t, cudaStream_t);
template void launch_write_suppressors<double>(
    const NmsSweep<double>&, const int64_t*, int32_t*, int32_t*, int64_t, cudaStream_t);

void launch_scatter_group_starts(const int32_t* starts_so_far,
                                 int32_t n,
                                 int32_t* group_starts,
                                 cudaStream_t stream) {
  scatter_group_starts_kernel<<<blocks_for(n), kThreads, 0, stream>>>(starts_so_far, n, group_starts);
}

void launch_resolve_groups(const int64_t* offsets,
                           const int32_t* counts,
                           const int32_t* edges,
                           int64_t capacity,
                           const int32_t* group_starts,
                           const int32_t* starts_so_far,
                           int32_t n,
                           int64_t max_per_group,
                           const int64_t* order,
                           int8_t* state,
                           bool* kept_by_index,
                           cudaStream_t stream) {
  // The number of groups lives on the device; blocks beyond it return at once.
  const int blocks = n < kMaxResolveBlocks ? n : kMaxResolveBlocks;
  resolve_groups_kernel<<<blocks, kThreads, 0, stream>>>(offsets, counts, edges, capacity, group_starts,
                                                         starts_so_far, n, max_per_group, order, state,
                                                         kept_by_index);
}

void launch_compact_kept(
    const bool* kept_by_index, const int64_t* kept_so_far, int64_t n, int64_t* out, cudaStream_t stream) {
  compact_kept_kernel<<<blocks_for(n), kThreads, 0, stream>>>(kept_by_index, kept_so_far, n, out);
}

}  // namespace cuda
}  // namespace tinyfast
