// The CUDA kernel's way of finding which boxes can suppress which: a sweep by x1 that lists every pair of
// one group with IoU > threshold, one thread per box, so that greedy NMS can then be resolved in parallel.
// (The CPU kernel, sequential per group, compares each box with the kept boxes only: kept_box_grid.h.)
// Header-only and free of torch headers so that the .cu files that include it compile in seconds.
#pragma once

#include "box_math.h"

namespace tinyfast {

// Boxes are ranked by (group, score descending, index ascending): a smaller rank is a box that greedy NMS
// considers first. The sweep reads them in x order, sorted by (group, x1), so that the boxes it compares
// are next to each other in memory.
template <typename T>
struct NmsSweep {
  const T* x_boxes;         // [n, 4], in x order
  const int64_t* x_groups;  // [n], in x order
  const int32_t* x_ranks;   // [n]: rank of each box in x order
  int32_t n;
  double iou_threshold;

  // Calls on_pair(lower_rank, higher_rank) for each pair of one group with IoU > threshold whose first
  // box in x order is at xp. Over all xp, every such pair is visited exactly once. Only boxes whose x
  // ranges meet are compared: a box starting right of x2 of the box at xp ends the sweep.
  template <typename OnPair>
  TF_HOST_DEVICE void visit(int32_t xp, OnPair&& on_pair) const {
    const T* box_a = x_boxes + 4 * static_cast<int64_t>(xp);
    if (!has_positive_extent(box_a)) {
      return;
    }
    const T area_a = box_area(box_a);
    const int64_t group = x_groups[xp];
    for (int32_t xq = xp + 1; xq < n; ++xq) {
      const T* box_b = x_boxes + 4 * static_cast<int64_t>(xq);
      if (x_groups[xq] != group || box_b[0] > box_a[2]) {
        break;
      }
      // Disjoint y ranges mean an IoU <= 0, never above a threshold >= 0: skip the division.
      const bool y_ranges_meet = box_b[1] < box_a[3] && box_b[3] > box_a[1];
      if (y_ranges_meet && iou_above(box_a, area_a, box_b, box_area(box_b), iou_threshold)) {
        const int32_t a = x_ranks[xp];
        const int32_t b = x_ranks[xq];
        on_pair(a > b ? a : b, a > b ? b : a);
      }
    }
  }
};

}  // namespace tinyfast
