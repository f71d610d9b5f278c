#include "ops/max_iou_assign.h"

#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <optional>

#include "ops/box_buckets.h"

namespace tinyfast {
namespace {

// The most grid cells a GT or ignore region is listed in: a larger one is read by every box of its image.
// Tall tiny persons span up to about 20 cells of a grid of 2 cells per GT; anchors span several cells.
constexpr int64_t kMaxCellsPerGt = 64;

void check_box_set(const at::Tensor& boxes,
                   const char* boxes_name,
                   const at::Tensor& counts,
                   const char* counts_name) {
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4, "max_iou_assign: ", boxes_name,
                    " must have shape [", boxes_name, " count, 4], got ", boxes.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(boxes.scalar_type()), "max_iou_assign: ", boxes_name,
                    " must be a floating [n, 4] tensor, got ", boxes.scalar_type());
  TORCH_CHECK_VALUE(counts.dim() == 1, "max_iou_assign: ", counts_name, " must have shape [B], got ",
                    counts.sizes());
  TORCH_CHECK_VALUE(counts.scalar_type() == at::kLong, "max_iou_assign: ", counts_name,
                    " must be an integer tensor of dtype int64, got ", counts.scalar_type());
  TORCH_CHECK_VALUE(boxes.size(0) <= std::numeric_limits<int64_t>::max() / (4 * kMaxCellsPerGt),
                    "max_iou_assign: too many ", boxes_name);
}

void check_args(const MaxIouAssignInput& in,
                const MaxIouAssignOptions& options,
                at::ScalarType compute_type) {
  const auto& [boxes, box_counts, gt_boxes, gt_counts, ignore_boxes, ignore_counts] = in;
  check_box_set(boxes, "boxes", box_counts, "box_counts");
  check_box_set(gt_boxes, "gt_boxes", gt_counts, "gt_counts");
  check_box_set(ignore_boxes, "ignore_boxes", ignore_counts, "ignore_counts");
  const int64_t num_images = box_counts.size(0);
  TORCH_CHECK_VALUE(gt_counts.size(0) == num_images && ignore_counts.size(0) == num_images,
                    "max_iou_assign: gt_counts and ignore_counts must have one entry per image (B = ",
                    num_images, ", box_counts), got ", gt_counts.size(0), " and ", ignore_counts.size(0));
  const at::Device device = boxes.device();
  TORCH_CHECK_VALUE(
      box_counts.device() == device && gt_boxes.device() == device && gt_counts.device() == device &&
          ignore_boxes.device() == device && ignore_counts.device() == device,
      "max_iou_assign: boxes, gt_boxes, ignore_boxes and their counts must be on one device, got ", device,
      ", ", gt_boxes.device(), " and ", ignore_boxes.device(), " (counts: ", box_counts.device(), ", ",
      gt_counts.device(), ", ", ignore_counts.device(), ")");
  TORCH_CHECK_VALUE(!std::isnan(options.pos_iou), "max_iou_assign: pos_iou must not be NaN");
  TORCH_CHECK_VALUE(!std::isnan(options.neg_iou), "max_iou_assign: neg_iou must not be NaN");
  TORCH_CHECK_VALUE(!std::isnan(options.min_pos_iou), "max_iou_assign: min_pos_iou must not be NaN");
  TORCH_CHECK_VALUE(!std::isnan(options.ignore_iof), "max_iou_assign: ignore_iof must not be NaN");

  // The checks of values: one host sync on a GPU. An area that overflows the compute type would make IoUs
  // NaN, which no threshold or maximum can order.
  const auto finite_area = [&](const at::Tensor& b) {
    const at::Tensor c = b.to(compute_type);
    return (c.select(1, 2) - c.select(1, 0)).mul(c.select(1, 3) - c.select(1, 1)).isfinite().all();
  };
  const auto counts_fit = [](const at::Tensor& counts, const at::Tensor& b) {
    return counts_sum_to(counts, b.size(0));
  };
  const at::Tensor facts = at::stack({
                                         at::isfinite(boxes).all(),
                                         at::isfinite(gt_boxes).all(),
                                         at::isfinite(ignore_boxes).all(),
                                         finite_area(boxes),
                                         finite_area(gt_boxes),
                                         finite_area(ignore_boxes),
                                         box_counts.ge(0).all(),
                                         gt_counts.ge(0).all(),
                                         ignore_counts.ge(0).all(),
                                         counts_fit(box_counts, boxes),
                                         counts_fit(gt_counts, gt_boxes),
                                         counts_fit(ignore_counts, ignore_boxes),
                                     })
                               .cpu();
  const bool* fact = facts.data_ptr<bool>();
  const char* names[3] = {"boxes", "gt_boxes", "ignore_boxes"};
  const char* count_names[3] = {"box_counts", "gt_counts", "ignore_counts"};
  for (int set = 0; set < 3; ++set) {
    TORCH_CHECK_VALUE(fact[set], "max_iou_assign: ", names[set], " must be finite (found NaN or inf)");
    TORCH_CHECK_VALUE(fact[3 + set], "max_iou_assign: ", names[set], " must have areas that are finite in ",
                      compute_type, " (found a box too large)");
    TORCH_CHECK_VALUE(fact[6 + set], "max_iou_assign: ", count_names[set], " must be >= 0");
  }
  TORCH_CHECK_VALUE(fact[9], "max_iou_assign: box_counts must sum to N = ", boxes.size(0), " (boxes)");
  TORCH_CHECK_VALUE(fact[10], "max_iou_assign: gt_counts must sum to G = ", gt_boxes.size(0), " (gt_boxes)");
  TORCH_CHECK_VALUE(fact[11], "max_iou_assign: ignore_counts must sum to I = ", ignore_boxes.size(0),
                    " (ignore_boxes)");
}

// [B + 1]: where each image's rows start, then the total.
at::Tensor starts_of(const at::Tensor& counts) {
  return at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)}).contiguous();
}

// `in`'s boxes in the compute type T, contiguous.
template <typename T>
void run(const MaxIouAssignInput& in,
         const MaxIouAssignOptions& options,
         at::Tensor& assigned_gt,
         at::Tensor& max_iou,
         AssignPasses<T> passes) {
  const auto& [boxes, box_counts, gt_boxes, gt_counts, ignore_boxes, ignore_counts] = in;
  const at::Tensor box_starts = starts_of(box_counts);
  const at::Tensor gt_starts = starts_of(gt_counts);
  const at::Tensor ignore_starts = starts_of(ignore_counts);
  const BoxBuckets gt_buckets = bucket_boxes(gt_boxes, gt_counts, kMaxCellsPerGt);
  // mmdetection ignores boxes only for ignore_iof_thr > 0.
  const bool use_ignore = options.ignore_iof > 0 && ignore_boxes.size(0) > 0;
  const BoxBuckets ignore_buckets =
      use_ignore ? bucket_boxes(ignore_boxes, ignore_counts, kMaxCellsPerGt) : BoxBuckets{};
  at::Tensor gt_max_iou = at::zeros({gt_boxes.size(0)}, gt_boxes.options());
  at::Tensor gt_argmax =
      at::full({gt_boxes.size(0)}, std::numeric_limits<int64_t>::max(), gt_counts.options());

  AssignProblem<T> problem{};
  problem.boxes = boxes.data_ptr<T>();
  problem.num_boxes = boxes.size(0);
  problem.num_images = box_counts.size(0);
  problem.box_starts = box_starts.data_ptr<int64_t>();
  problem.gt_boxes = gt_boxes.data_ptr<T>();
  problem.num_gts = gt_boxes.size(0);
  problem.gt_starts = gt_starts.data_ptr<int64_t>();
  problem.gt_grid = grid_view<T>(gt_buckets);
  problem.ignore_boxes = ignore_boxes.data_ptr<T>();
  problem.ignore_starts = ignore_starts.data_ptr<int64_t>();
  if (use_ignore) {
    problem.ignore_grid = grid_view<T>(ignore_buckets);
  }
  problem.use_ignore = use_ignore;
  problem.pos_iou = static_cast<T>(options.pos_iou);
  problem.neg_iou = static_cast<T>(options.neg_iou);
  problem.min_pos_iou = static_cast<T>(options.min_pos_iou);
  problem.ignore_iof = static_cast<T>(options.ignore_iof);
  problem.low_quality = options.low_quality;
  problem.gt_max_assign_all = options.gt_max_assign_all;
  problem.assigned_gt = assigned_gt.data_ptr<int64_t>();
  problem.max_iou = max_iou.data_ptr<T>();
  problem.gt_max_iou = gt_max_iou.data_ptr<T>();
  problem.gt_argmax = gt_argmax.data_ptr<int64_t>();

  passes.first(problem);
  if (options.low_quality) {
    if (!options.gt_max_assign_all) {
      passes.argmax(problem);
    }
    passes.low_quality(problem);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> max_iou_assign_with(const MaxIouAssignInput& in,
                                                       const MaxIouAssignOptions& options,
                                                       const MaxIouAssignBackend& backend) {
  const bool use_double = in.boxes.scalar_type() == at::kDouble || in.gt_boxes.scalar_type() == at::kDouble ||
                          in.ignore_boxes.scalar_type() == at::kDouble;
  const auto compute_type = use_double ? at::kDouble : at::kFloat;
  check_args(in, options, compute_type);
  const int64_t num_boxes = in.boxes.size(0);
  at::Tensor assigned_gt = at::full({num_boxes}, kAssignNegative, in.box_counts.options());
  at::Tensor max_iou = at::zeros({num_boxes}, in.boxes.options().dtype(compute_type));
  if (num_boxes > 0 && in.gt_boxes.size(0) > 0) {
    const c10::OptionalDeviceGuard device_guard(
        in.boxes.is_cpu() ? std::nullopt : std::optional<at::Device>(in.boxes.device()));
    const at::Tensor boxes_c = in.boxes.to(compute_type).contiguous();
    const at::Tensor gts_c = in.gt_boxes.to(compute_type).contiguous();
    const at::Tensor ignores_c = in.ignore_boxes.to(compute_type).contiguous();
    const MaxIouAssignInput converted{boxes_c,      in.box_counts, gts_c,
                                      in.gt_counts, ignores_c,     in.ignore_counts};
    if (use_double) {
      run<double>(converted, options, assigned_gt, max_iou, backend.double_passes);
    } else {
      run<float>(converted, options, assigned_gt, max_iou, backend.float_passes);
    }
  }
  return {assigned_gt, max_iou.to(in.boxes.scalar_type())};
}

TORCH_LIBRARY_FRAGMENT(tinyfast, m) {
  m.def(
      "max_iou_assign(Tensor boxes, Tensor box_counts, Tensor gt_boxes, Tensor gt_counts, Tensor "
      "ignore_boxes, "
      "Tensor ignore_counts, float pos_iou, float neg_iou, float min_pos_iou, bool low_quality, "
      "bool gt_max_assign_all, float ignore_iof) -> (Tensor assigned_gt, Tensor max_iou)");
}

}  // namespace tinyfast
