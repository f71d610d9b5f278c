#include "ops/fcos_targets.h"

#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <optional>

#include "ops/box_buckets.h"

namespace tinyfast {
namespace {

// The most grid cells a GT is listed in (a larger GT goes to its image's list of large GTs).
constexpr int64_t kMaxCellsPerGt = 16;

void check_args(const FcosTargetsInput& in, const FcosTargetsOptions& options) {
  const auto& [points, gt_boxes, gt_labels, gt_counts] = in;
  const auto& [level_sizes, strides, range_lo, range_hi, num_classes, center_sampling_radius, norm_on_bbox] =
      options;
  TORCH_CHECK_VALUE(points.dim() == 2 && points.size(1) == 2,
                    "fcos_targets: points must have shape [P, 2], got ", points.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(points.scalar_type()),
                    "fcos_targets: points must be a floating tensor, got ", points.scalar_type());
  const size_t num_levels = level_sizes.size();
  TORCH_CHECK_VALUE(num_levels >= 1 && num_levels <= kFcosMaxLevels,
                    "fcos_targets: level_sizes must have 1 to ", kFcosMaxLevels, " levels, got ", num_levels);
  TORCH_CHECK_VALUE(
      strides.size() == num_levels && range_lo.size() == num_levels && range_hi.size() == num_levels,
      "fcos_targets: strides and regress_ranges must have one entry per level (", num_levels, "), got ",
      strides.size(), " and ", range_lo.size());
  int64_t total = 0;
  for (const int64_t size : level_sizes) {
    TORCH_CHECK_VALUE(size >= 0, "fcos_targets: level_sizes must be ints >= 0, got ", level_sizes);
    total += size;
  }
  TORCH_CHECK_VALUE(total == points.size(0), "fcos_targets: level_sizes must sum to P = ", points.size(0),
                    ", got ", total);
  for (size_t level = 0; level < num_levels; ++level) {
    TORCH_CHECK_VALUE(std::isfinite(strides[level]) && strides[level] > 0,
                      "fcos_targets: strides must be finite and > 0, got ", strides);
    TORCH_CHECK_VALUE(!std::isnan(range_lo[level]) && !std::isnan(range_hi[level]),
                      "fcos_targets: regress_ranges must not be NaN");
  }
  TORCH_CHECK_VALUE(!std::isnan(center_sampling_radius),
                    "fcos_targets: center_sampling_radius must be a number or None, got nan");
  TORCH_CHECK_VALUE(gt_boxes.dim() == 2 && gt_boxes.size(1) == 4,
                    "fcos_targets: gt_boxes must have shape [G, 4], got ", gt_boxes.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(gt_boxes.scalar_type()),
                    "fcos_targets: gt_boxes must be a floating tensor, got ", gt_boxes.scalar_type());
  TORCH_CHECK_VALUE(gt_labels.dim() == 1 && gt_labels.size(0) == gt_boxes.size(0),
                    "fcos_targets: gt_labels must have shape [G] with G = ", gt_boxes.size(0),
                    " (gt_boxes), got ", gt_labels.sizes());
  TORCH_CHECK_VALUE(gt_labels.scalar_type() == at::kLong,
                    "fcos_targets: gt_labels must be an integer tensor of dtype int64, got ",
                    gt_labels.scalar_type());
  TORCH_CHECK_VALUE(gt_counts.dim() == 1, "fcos_targets: gt_counts must have shape [B], got ",
                    gt_counts.sizes());
  TORCH_CHECK_VALUE(gt_counts.scalar_type() == at::kLong,
                    "fcos_targets: gt_counts must be an integer tensor of dtype int64, got ",
                    gt_counts.scalar_type());
  TORCH_CHECK_VALUE(gt_boxes.device() == points.device() && gt_labels.device() == points.device() &&
                        gt_counts.device() == points.device(),
                    "fcos_targets: points, gt_boxes, gt_labels and gt_counts must be on one device, got ",
                    points.device(), ", ", gt_boxes.device(), ", ", gt_labels.device(), " and ",
                    gt_counts.device());
  TORCH_CHECK_VALUE(num_classes >= 1, "fcos_targets: num_classes must be >= 1, got ", num_classes);
  TORCH_CHECK_VALUE(gt_boxes.size(0) <= std::numeric_limits<int64_t>::max() / (4 * kMaxCellsPerGt),
                    "fcos_targets: too many GTs");

  // The checks of values: one host sync on a GPU.
  const at::Tensor facts = at::stack({
                                         at::isfinite(gt_boxes).all(),
                                         at::isfinite(points).all(),
                                         gt_labels.ge(0).logical_and(gt_labels.lt(num_classes)).all(),
                                         gt_counts.ge(0).all(),
                                         counts_sum_to(gt_counts, gt_boxes.size(0)),
                                     })
                               .cpu();
  const bool* fact = facts.data_ptr<bool>();
  TORCH_CHECK_VALUE(fact[0], "fcos_targets: gt_boxes must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(fact[1], "fcos_targets: points must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(fact[2], "fcos_targets: gt_labels must be in [0, num_classes = ", num_classes, ")");
  TORCH_CHECK_VALUE(fact[3], "fcos_targets: gt_counts must be >= 0");
  TORCH_CHECK_VALUE(fact[4], "fcos_targets: gt_counts must sum to G = ", gt_boxes.size(0), " (gt_boxes)");
}

template <typename T>
FcosLevels<T> make_levels(at::IntArrayRef level_sizes,
                          at::ArrayRef<double> strides,
                          at::ArrayRef<double> range_lo,
                          at::ArrayRef<double> range_hi,
                          double center_sampling_radius) {
  FcosLevels<T> levels{};
  levels.count = static_cast<int32_t>(level_sizes.size());
  int64_t end = 0;
  for (int32_t level = 0; level < levels.count; ++level) {
    end += level_sizes[level];
    levels.end[level] = end;
    levels.stride[level] = static_cast<T>(strides[level]);
    levels.radius[level] = static_cast<T>(strides[level] * center_sampling_radius);
    levels.range_lo[level] = static_cast<T>(range_lo[level]);
    levels.range_hi[level] = static_cast<T>(range_hi[level]);
  }
  return levels;
}

struct Buckets {
  at::Tensor point_cells;
  at::Tensor cell_starts;
  at::Tensor cell_gts;
  at::Tensor large_cells;
};

// GT boxes: [G, 4] and points [P, 2] in the compute type. A point looks up its cell of its image's grid.
Buckets bucket_gts(const at::Tensor& boxes, const at::Tensor& counts, const at::Tensor& points) {
  const BoxBuckets grid = bucket_boxes(boxes, counts, kMaxCellsPerGt);
  Buckets buckets;
  buckets.cell_gts = grid.cell_items;
  buckets.cell_starts = grid.cell_starts;
  buckets.large_cells = grid.large_cells.contiguous();

  const at::Tensor px = points.select(1, 0).unsqueeze(0), py = points.select(1, 1).unsqueeze(0);
  const auto column_of_image = [](const at::Tensor& t) { return t.unsqueeze(1); };
  const at::Tensor point_column = cell_along(
      px, column_of_image(grid.lo_x), column_of_image(grid.x_cells_per_unit), column_of_image(grid.columns));
  const at::Tensor point_row = cell_along(py, column_of_image(grid.lo_y),
                                          column_of_image(grid.y_cells_per_unit), column_of_image(grid.rows));
  // A point on or outside the union's border is strictly inside no GT box.
  const at::Tensor in_union = px.gt(column_of_image(grid.lo_x))
                                  .logical_and(px.lt(column_of_image(grid.hi_x)))
                                  .logical_and(py.gt(column_of_image(grid.lo_y)))
                                  .logical_and(py.lt(column_of_image(grid.hi_y)));
  const at::Tensor point_key = column_of_image(grid.cell_offsets) +
                               point_row * column_of_image(grid.columns.to(at::kLong)) + point_column;
  buckets.point_cells = at::where(in_union, point_key, -1).contiguous();
  return buckets;
}

template <typename T>
void run(const at::Tensor& points,
         const at::Tensor& boxes,
         const at::Tensor& labels_in,
         const at::Tensor& counts,
         const Buckets& buckets,
         const FcosLevels<T>& levels,
         bool center_sampling,
         bool norm_on_bbox,
         int64_t num_classes,
         at::Tensor& labels,
         at::Tensor& targets,
         FcosLauncher<T> launch) {
  FcosProblem<T> problem{};
  problem.points = points.data_ptr<T>();
  problem.num_points = points.size(0);
  problem.gt_boxes = boxes.data_ptr<T>();
  problem.gt_labels = labels_in.data_ptr<int64_t>();
  problem.gt_counts = counts.data_ptr<int64_t>();
  problem.levels = levels;
  problem.buckets =
      FcosBuckets{buckets.point_cells.data_ptr<int64_t>(), buckets.cell_starts.data_ptr<int64_t>(),
                  buckets.cell_gts.data_ptr<int64_t>(), buckets.large_cells.data_ptr<int64_t>()};
  problem.center_sampling = center_sampling;
  problem.norm_on_bbox = norm_on_bbox;
  problem.background_label = num_classes;
  problem.labels = labels.data_ptr<int64_t>();
  problem.targets = targets.data_ptr<T>();
  launch(problem, labels.size(0));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> fcos_targets_with(const FcosTargetsInput& in,
                                                     const FcosTargetsOptions& options,
                                                     const FcosTargetsBackend& backend) {
  check_args(in, options);
  const auto& [points, gt_boxes, gt_labels, gt_counts] = in;
  const bool use_double = points.scalar_type() == at::kDouble || gt_boxes.scalar_type() == at::kDouble;
  const auto compute_type = use_double ? at::kDouble : at::kFloat;
  const int64_t num_images = gt_counts.size(0);
  const int64_t num_points = points.size(0);
  if (num_images == 0 || num_points == 0 || gt_boxes.size(0) == 0) {
    return {at::full({num_images, num_points}, options.num_classes, gt_labels.options()),
            at::zeros({num_images, num_points, 4}, points.options().dtype(compute_type))};
  }
  const c10::OptionalDeviceGuard device_guard(points.is_cpu() ? std::nullopt
                                                              : std::optional<at::Device>(points.device()));
  const at::Tensor points_c = points.to(compute_type).contiguous();
  const at::Tensor boxes_c = gt_boxes.to(compute_type).contiguous();
  const at::Tensor labels_c = gt_labels.contiguous();
  const at::Tensor counts_c = gt_counts.contiguous();
  const Buckets buckets = bucket_gts(boxes_c, counts_c, points_c);
  at::Tensor labels = at::empty({num_images, num_points}, gt_labels.options());
  at::Tensor targets = at::empty({num_images, num_points, 4}, points_c.options());
  const bool center_sampling = options.center_sampling_radius > 0;
  const auto levels = [&](auto zero) {
    return make_levels<decltype(zero)>(options.level_sizes, options.strides, options.range_lo,
                                       options.range_hi, options.center_sampling_radius);
  };
  if (use_double) {
    run<double>(points_c, boxes_c, labels_c, counts_c, buckets, levels(0.0), center_sampling,
                options.norm_on_bbox, options.num_classes, labels, targets, backend.launch_double);
  } else {
    run<float>(points_c, boxes_c, labels_c, counts_c, buckets, levels(0.0f), center_sampling,
               options.norm_on_bbox, options.num_classes, labels, targets, backend.launch_float);
  }
  return {labels, targets};
}

TORCH_LIBRARY_FRAGMENT(tinyfast, m) {
  m.def(
      "fcos_targets(Tensor points, int[] level_sizes, float[] strides, float[] regress_lo, float[] "
      "regress_hi, "
      "Tensor gt_boxes, Tensor gt_labels, Tensor gt_counts, int num_classes, float center_sampling_radius, "
      "bool norm_on_bbox) -> (Tensor labels, Tensor bbox_targets)");
}

}  // namespace tinyfast
