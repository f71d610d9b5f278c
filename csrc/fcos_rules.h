// FCOS target assignment, as mmdetection 2.x FCOSHead._get_target_single does it, for one point of one
// image: shared by the CPU and CUDA kernels (so that the rules are tested on the CPU). The operations are
// mmdetection's, in its order and precision, so that results are bit-identical to it.
#pragma once

#include <cstdint>

#include "box_math.h"

namespace tinyfast {

constexpr int kFcosMaxLevels = 16;

// mmdetection marks the areas of non-candidates with INF = 1e8 and calls a point background when the
// smallest area equals INF: a GT of area >= 1e8 is never assigned.
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

template <typename T>
TF_HOST_DEVICE void fcos_visit_cell(
    const FcosProblem<T>& problem, int64_t cell, T x, T y, int32_t level, T& best_area, int64_t& best_gt) {
  const FcosLevels<T>& levels = problem.levels;
  for (int64_t k = problem.buckets.cell_starts[cell]; k < problem.buckets.cell_starts[cell + 1]; ++k) {
    const int64_t gt = problem.buckets.cell_gts[k];
    const T* box = problem.gt_boxes + 4 * gt;
    if (fcos_is_candidate(
            x, y, box, problem.center_sampling, levels.radius[level], levels.range_lo[level],
            levels.range_hi[level])) {
      const T area = box_area(box);
      if (fcos_is_better(area, gt, best_area, best_gt)) {
        best_area = area;
        best_gt = gt;
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
  const T inf_area = T(kFcosInfArea);
  T best_area = inf_area;
  int64_t best_gt = INT64_MAX;  // an area of exactly INF is "chosen" and then read as background, as in mmdet
  const int64_t cell = problem.buckets.point_cells[out];
  if (cell >= 0) {
    fcos_visit_cell(problem, cell, x, y, level, best_area, best_gt);
    fcos_visit_cell(problem, problem.buckets.large_cells[image], x, y, level, best_area, best_gt);
  }
  T* target = problem.targets + 4 * out;
  if (best_area == inf_area) {
    problem.labels[out] = problem.background_label;
    target[0] = target[1] = target[2] = target[3] = T(0);
    return;
  }
  const T* box = problem.gt_boxes + 4 * best_gt;
  problem.labels[out] = problem.gt_labels[best_gt];
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
