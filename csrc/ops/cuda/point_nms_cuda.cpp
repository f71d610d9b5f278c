// Point NMS on CUDA, as batched NMS: everything stays on the device; a sweep by x lists which points suppress
// which, greedy NMS is resolved on the lists in parallel rounds (the launchers of batched_nms_kernels.h), and
// the one host sync reads the output size together with the input checks and the size of the lists.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/cuda/batched_nms_kernels.h"
#include "ops/cuda/point_nms_kernels.h"
#include "ops/cuda/suppression_lists.h"
#include "ops/point_nms.h"

namespace tinyfast {
namespace {

// Points ranked by (group, score descending, index ascending), and in x order, (group, x) for the sweep.
struct RankedPoints {
  at::Tensor order;     // [n] int64: original index of each rank
  at::Tensor groups;    // [n] int64, by rank
  at::Tensor x_points;  // [n, 2] float64, in x order
  at::Tensor x_radii;   // [n] float64, in x order
  at::Tensor x_reach;   // [n] float64: the largest radius of the group, in x order
  at::Tensor x_groups;  // [n] int64, in x order
  at::Tensor x_ranks;   // [n] int32: rank of each point in x order
};

RankedPoints rank_points(const at::Tensor& points,
                         const at::Tensor& scores,
                         const at::Tensor& idxs,
                         const at::Tensor& radii) {
  const int64_t n = points.size(0);
  // Two stable sorts give the lexicographic order (group, score descending, index ascending).
  const at::Tensor by_score = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor group_of_score_rank = idxs.index_select(0, by_score);
  RankedPoints ranked;
  ranked.order = by_score.index_select(
      0, std::get<1>(group_of_score_rank.sort(/*stable=*/true, 0, /*descending=*/false)));
  ranked.groups = idxs.index_select(0, ranked.order).contiguous();
  const at::Tensor points_by_rank = points.index_select(0, ranked.order).to(at::kDouble);
  const at::Tensor by_x = std::get<1>(points_by_rank.select(1, 0).sort(/*stable=*/true, 0, false));
  const at::Tensor x_order =
      by_x.index_select(0, std::get<1>(ranked.groups.index_select(0, by_x).sort(true, 0, false)));
  ranked.x_points = points_by_rank.index_select(0, x_order).contiguous();
  ranked.x_radii = radii.index_select(0, ranked.order.index_select(0, x_order)).contiguous();
  ranked.x_groups = ranked.groups.index_select(0, x_order).contiguous();
  ranked.x_ranks = x_order.to(at::kInt).contiguous();
  // Dense group numbers in x order (groups are contiguous there), then each group's largest radius; radii
  // that suppress nothing (0, NaN) count as 0.
  const at::Tensor starts_group =
      at::cat({at::ones({1}, ranked.x_groups.options()),
               ranked.x_groups.slice(0, 1).ne(ranked.x_groups.slice(0, 0, n - 1)).to(at::kLong)});
  const at::Tensor dense_group = starts_group.cumsum(0) - 1;
  const at::Tensor suppressing =
      at::where(ranked.x_radii > 0, ranked.x_radii, at::zeros_like(ranked.x_radii));
  const at::Tensor group_reach =
      at::zeros({n}, ranked.x_radii.options()).scatter_reduce_(0, dense_group, suppressing, "amax");
  ranked.x_reach = group_reach.index_select(0, dense_group).contiguous();
  return ranked;
}

Suppressors build_suppressors(const RankedPoints& ranked, int64_t capacity, cudaStream_t stream) {
  const int32_t n = static_cast<int32_t>(ranked.order.size(0));
  const PointSweep sweep{ranked.x_points.data_ptr<double>(), ranked.x_radii.data_ptr<double>(),
                         ranked.x_reach.data_ptr<double>(),  ranked.x_groups.data_ptr<int64_t>(),
                         ranked.x_ranks.data_ptr<int32_t>(), n};
  at::Tensor counts = at::zeros({n}, ranked.x_ranks.options());
  cuda::launch_count_point_suppressors(sweep, counts.data_ptr<int32_t>(), stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  Suppressors result = suppressors_with_counts(std::move(counts), capacity);
  at::Tensor cursors = at::zeros({n}, ranked.x_ranks.options());
  cuda::launch_write_point_suppressors(sweep, result.offsets.data_ptr<int64_t>(), cursors.data_ptr<int32_t>(),
                                       result.edges.data_ptr<int32_t>(), capacity, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

at::Tensor keep_cuda(const PointNmsInput& in, const PointNmsOptions& options) {
  const auto& [points, scores, idxs, sizes] = in;
  const int64_t max_per_group = options.cap();
  const c10::cuda::CUDAGuard device_guard(points.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = points.size(0);

  // The radii as suppression_radius computes them: one float64 product each.
  const at::Tensor sizes64 = sizes.to(at::kDouble);
  const at::Tensor radii = sizes64.mul(options.distance_threshold).contiguous();
  const RankedPoints ranked = rank_points(points, scores, idxs, radii);
  int64_t capacity = kSuppressorsPerItemGuess * n;
  while (true) {
    const Suppressors suppressors = build_suppressors(ranked, capacity, stream);
    const at::Tensor kept_by_index = resolve(ranked.order, ranked.groups, suppressors, max_per_group, stream);
    const at::Tensor kept_so_far = kept_by_index.cumsum(0, at::kLong);
    const at::Tensor facts = at::stack({
                                           kept_so_far[n - 1],
                                           suppressors.total,
                                           at::isfinite(points).all().to(at::kLong),
                                           at::isfinite(scores).all().to(at::kLong),
                                           at::isfinite(sizes64).all().to(at::kLong),
                                           sizes64.ge(0).all().to(at::kLong),
                                       })
                                 .cpu();
    const int64_t* fact = facts.data_ptr<int64_t>();
    TORCH_CHECK_VALUE(fact[2] == 1, "point_nms: points must be finite (found NaN or inf)");
    TORCH_CHECK_VALUE(fact[3] == 1, "point_nms: scores must be finite (found NaN or inf)");
    TORCH_CHECK_VALUE(fact[4] == 1, "point_nms: sizes must be finite (found NaN or inf)");
    TORCH_CHECK_VALUE(fact[5] == 1, "point_nms: sizes must be >= 0 (found a negative size)");
    if (fact[1] > capacity) {
      capacity = fact[1];
      continue;
    }
    return kept_by_score(kept_by_index, kept_so_far, fact[0], scores, stream);
  }
}

constexpr PointNmsBackend kCudaBackend{&keep_cuda};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("point_nms", &point_nms_kernel<kCudaBackend>);
}

}  // namespace tinyfast
