// The host side that batched_nms and point_nms share on CUDA: greedy NMS over suppression lists (which item
// suppresses which, written by each op's sweep), resolved in parallel rounds by the launchers of
// batched_nms_kernels.h, and the kept items read back by score.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "ops/cuda/batched_nms_kernels.h"

namespace tinyfast {

// Suppression lists rarely hold more than a few items each; above this guess the lists are rebuilt at their
// exact size (one more sync).
constexpr int64_t kSuppressorsPerItemGuess = 16;

struct Suppressors {
  int64_t capacity;
  at::Tensor counts;   // [n] int32
  at::Tensor offsets;  // [n] int64, exclusive prefix sum of counts
  at::Tensor edges;    // [capacity] int32
  at::Tensor total;    // [] int64, on the device
};

// The lists' layout from each item's count of suppressors (int32, on the device): offsets, the total and an
// edge buffer of `capacity` entries for the sweep to fill.
inline Suppressors suppressors_with_counts(at::Tensor counts, int64_t capacity) {
  Suppressors result;
  result.capacity = capacity;
  const at::Tensor counts64 = counts.to(at::kLong);
  const at::Tensor inclusive = counts64.cumsum(0);
  result.offsets = (inclusive - counts64).contiguous();
  result.total = inclusive[counts.size(0) - 1];
  result.edges = at::empty({std::max<int64_t>(capacity, 1)}, counts.options());
  result.counts = std::move(counts);
  return result;
}

// kept_by_index[i] is true for every item i that greedy NMS (and the per-group cap) keeps; `order` holds the
// original index of each rank, `groups` the group of each rank (ranked by group, then score).
inline at::Tensor resolve(const at::Tensor& order,
                          const at::Tensor& groups,
                          const Suppressors& suppressors,
                          int64_t max_per_group,
                          cudaStream_t stream) {
  const int32_t n = static_cast<int32_t>(order.size(0));
  const at::Tensor starts_group = at::cat({at::ones({1}, groups.options().dtype(at::kInt)),
                                           groups.slice(0, 1).ne(groups.slice(0, 0, n - 1)).to(at::kInt)});
  const at::Tensor starts_so_far = starts_group.cumsum(0, at::kInt).contiguous();
  at::Tensor group_starts = at::empty({n + 1}, starts_so_far.options());
  cuda::launch_scatter_group_starts(starts_so_far.data_ptr<int32_t>(), n, group_starts.data_ptr<int32_t>(),
                                    stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  at::Tensor state = at::zeros({n}, groups.options().dtype(at::kChar));
  at::Tensor kept_by_index = at::zeros({n}, groups.options().dtype(at::kBool));
  cuda::launch_resolve_groups(suppressors.offsets.data_ptr<int64_t>(), suppressors.counts.data_ptr<int32_t>(),
                              suppressors.edges.data_ptr<int32_t>(), suppressors.capacity,
                              group_starts.data_ptr<int32_t>(), starts_so_far.data_ptr<int32_t>(), n,
                              max_per_group, order.data_ptr<int64_t>(), state.data_ptr<int8_t>(),
                              kept_by_index.data_ptr<bool>(), stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return kept_by_index;
}

// The `kept_count` kept indices (kept_so_far: the inclusive prefix sum of kept_by_index), by score descending
// with ties by lower index.
inline at::Tensor kept_by_score(const at::Tensor& kept_by_index,
                                const at::Tensor& kept_so_far,
                                int64_t kept_count,
                                const at::Tensor& scores,
                                cudaStream_t stream) {
  const int64_t n = kept_by_index.size(0);
  at::Tensor kept_ascending = at::empty({kept_count}, kept_so_far.options());
  cuda::launch_compact_kept(kept_by_index.data_ptr<bool>(), kept_so_far.data_ptr<int64_t>(), n,
                            kept_ascending.data_ptr<int64_t>(), stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor kept_scores = scores.index_select(0, kept_ascending);
  return kept_ascending.index_select(0,
                                     std::get<1>(kept_scores.sort(/*stable=*/true, 0, /*descending=*/true)));
}

}  // namespace tinyfast
