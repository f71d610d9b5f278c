// FCOS target assignment, as mmdetection 2.x FCOSHead._get_target_single does it, for one point of one
// image: shared by the CPU and CUDA kernels (so that the rules are tested on the CPU). The operations are
// mmdetection's, in its order and precision, so that results are bit-identical to it.
#pragma once

#include <cstdint>

#include "box_math.h"

namespace tinyfast {

constexpr int kFcosMaxLevels = 16;

// mmdetection sets the areas of non-candidates to INF = 1e8, takes the smallest area over the image's GTs and
// calls a point background when it equals INF. So a candidate of area exactly 1e8 is never assigned, and one
// of area > 1e8 only when every GT of the image is a candidate for the point (no INF to undercut it).
constexpr double kFcosInfArea = 1e8;

template <typename T>
struct FcosLevels {
  int32_t count;
  int64_t end[kFcosMaxLevels];  // one past the last point of the level
  T stride[kFcosMaxLevels];
  T radius[kFcosMaxLevels];  // stride * center sampling radius, rounded to T as mmdetection does
  T range_lo[kFcosMaxLevels];
  T range_hi[kFcosMaxLevels];
};

// GTs bucketed on a uniform grid per image (CSR): a point looks only at the GTs listed in its cell.
struct FcosBuckets {
  const int64_t* point_cells;  // [B, P]: the point's cell, or -1 when no GT box can contain the point
  const int64_t* cell_starts;  // [cells + 1]
  const int64_t* cell_gts;     // GT indices (into all images' GTs), cell by cell
  const int64_t* large_cells;  // [B]: the cell that lists the image's GTs too large for the grid
};

template <typename T>
struct FcosProblem {
  const T* points;  // [P, 2]
  int64_t num_points;
  const T* gt_boxes;  // [G, 4]
  const int64_t* gt_labels;
  const int64_t* gt_counts;  // [B]
  FcosLevels<T> levels;
  FcosBuckets buckets;
  bool center_sampling;
  bool norm_on_bbox;
  int64_t background_label;
  int64_t* labels;  // [B, P]
  T* targets;       // [B, P, 4]
};

// Is the GT a candidate for the point: inside the GT box (or inside its center-sampling box clipped to
// the GT box), with max(l, t, r, b) in the level's regression range, both ends inclusive.
template <typename T>
TF_HOST_DEVICE bool fcos_is_candidate(
    T x, T y, const T* box, bool center_sampling, T radius, T range_lo, T range_hi) {
  const T left = x - box[0];
  const T top = y - box[1];
  const T right = box[2] - x;
  const T bottom = box[3] - y;
  bool inside;
  if (center_sampling) {
    const T center_x = (box[0] + box[2]) / T(2);
    const T center_y = (box[1] + box[3]) / T(2);
    const T x_min = center_x - radius;
    const T y_min = center_y - radius;
    const T x_max = center_x + radius;
    const T y_max = center_y + radius;
    const T clipped_x1 = x_min > box[0] ? x_min : box[0];
    const T clipped_y1 = y_min > box[1] ? y_min : box[1];
    const T clipped_x2 = x_max > box[2] ? box[2] : x_max;
    const T clipped_y2 = y_max > box[3] ? box[3] : y_max;
    inside = x - clipped_x1 > T(0) && y - clipped_y1 > T(0) && clipped_x2 - x > T(0) && clipped_y2 - y > T(0);
  } else {
    inside = left > T(0) && top > T(0) && right > T(0) && bottom > T(0);
  }
  const T max_distance = tf_max(tf_max(left, top), tf_max(right, bottom));
  return inside && max_distance >= range_lo && max_distance <= range_hi;
}

// The smaller area wins; equal areas go to the lower GT index (torch.min returns the first minimum).
template <typename T>
TF_HOST_DEVICE bool fcos_is_better(T area, int64_t gt, T best_area, int64_t best_gt) {
  return area < best_area || (area == best_area && gt < best_gt);
}

template <typename T>
TF_HOST_DEVICE int32_t fcos_level_of(const FcosLevels<T>& levels, int64_t point) {
  int32_t level = 0;
  while (level + 1 < levels.count && point >= levels.end[level]) {
    ++level;
  }
  return level;
}

// The best candidate so far (ties: see fcos_is_better) and how many GTs were candidates.
template <typename T>
struct FcosBest {
  T area;
  int64_t gt = -1;
  int64_t candidates = 0;
};

template <typename T>
TF_HOST_DEVICE void fcos_visit_cell(
    const FcosProblem<T>& problem, int64_t cell, T x, T y, int32_t level, FcosBest<T>& best) {
  const FcosLevels<T>& levels = problem.levels;
  for (int64_t k = problem.buckets.cell_starts[cell]; k < problem.buckets.cell_starts[cell + 1]; ++k) {
    const int64_t gt = problem.buckets.cell_gts[k];
    const T* box = problem.gt_boxes + 4 * gt;
    if (fcos_is_candidate(x, y, box, problem.center_sampling, levels.radius[level], levels.range_lo[level],
                          levels.range_hi[level])) {
      const T area = box_area(box);
      if (best.candidates++ == 0 || fcos_is_better(area, gt, best.area, best.gt)) {
        best.area = area;
        best.gt = gt;
      }
    }
  }
}

// Label and (l, t, r, b) target of point `point` of image `image`; background: label = background_label,
// targets 0.
template <typename T>
TF_HOST_DEVICE void fcos_assign_point(const FcosProblem<T>& problem, int64_t image, int64_t point) {
  const int64_t out = image * problem.num_points + point;
  const T x = problem.points[2 * point];
  const T y = problem.points[2 * point + 1];
  const int32_t level = fcos_level_of(problem.levels, point);
  FcosBest<T> best{};
  const int64_t cell = problem.buckets.point_cells[out];
  if (cell >= 0) {
    fcos_visit_cell(problem, cell, x, y, level, best);
    fcos_visit_cell(problem, problem.buckets.large_cells[image], x, y, level, best);
  }
  // mmdetection's min over the image's areas, non-candidates at INF (each GT is visited at most once).
  const T inf_area = T(kFcosInfArea);
  const bool any_non_candidate = best.candidates < problem.gt_counts[image];
  const bool background =
      best.candidates == 0 || best.area == inf_area || (any_non_candidate && best.area > inf_area);
  T* target = problem.targets + 4 * out;
  if (background) {
    problem.labels[out] = problem.background_label;
    target[0] = target[1] = target[2] = target[3] = T(0);
    return;
  }
  const T* box = problem.gt_boxes + 4 * best.gt;
  problem.labels[out] = problem.gt_labels[best.gt];
  target[0] = x - box[0];
  target[1] = y - box[1];
  target[2] = box[2] - x;
  target[3] = box[3] - y;
  if (problem.norm_on_bbox) {
    const T stride = problem.levels.stride[level];
    for (int side = 0; side < 4; ++side) {
      target[side] = target[side] / stride;
    }
  }
}

}  // namespace tinyfast
