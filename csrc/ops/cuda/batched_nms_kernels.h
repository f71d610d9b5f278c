// Launchers of the batched NMS CUDA kernels: raw pointers and a stream, no torch types, so that the .cu
// file that defines them compiles without torch headers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ops/cuda/batched_nms_sweep.h"

namespace tinyfast {
namespace cuda {

template <typename T>
void launch_count_suppressors(const NmsSweep<T>& sweep, int32_t* counts, cudaStream_t stream);

template <typename T>
void launch_write_suppressors(const NmsSweep<T>& sweep,
                              const int64_t* offsets,
                              int32_t* cursors,
                              int32_t* edges,
                              int64_t capacity,
                              cudaStream_t stream);

// group_starts[k] = first rank of the k-th group; group_starts[num_groups] = n. starts_so_far is the
// inclusive prefix sum of "rank r starts a group".
void launch_scatter_group_starts(const int32_t* starts_so_far,
                                 int32_t n,
                                 int32_t* group_starts,
                                 cudaStream_t stream);

// Greedy NMS of every group, resolved in parallel rounds, one thread block per group at a time; then the
// first max_per_group (if >= 0) kept boxes of each group are marked in kept_by_index (original indices).
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
                           cudaStream_t stream);

// out[kept_so_far[i] - 1] = i for every kept i (kept_so_far: inclusive prefix sum of kept).
void launch_compact_kept(
    const bool* kept_by_index, const int64_t* kept_so_far, int64_t n, int64_t* out, cudaStream_t stream);

}  // namespace cuda
}  // namespace tinyfast
