// The part of batched NMS shared by the CPU and CUDA kernels: finding which boxes can suppress which.
// Header-only and free of torch headers so that the .cu files that include it compile in seconds.
#pragma once

#include "box_math.h"

namespace tinyfast {

// Boxes are indexed by rank: sorted by (group, score descending, index ascending), so a smaller rank is a
// box that greedy NMS considers first. Within each group, x_order lists the ranks sorted by x1.
template <typename T>
struct NmsSweep {
  const T* boxes;          // [n, 4], by rank
  const int64_t* groups;   // [n], by rank
  const int32_t* x_order;  // [n]: ranks sorted by (group, x1)
  int32_t n;
  double iou_threshold;

  // Calls on_pair(lower_rank, higher_rank) for each pair of one group with IoU > threshold whose first
  // box in x order is x_order[xp]. Over all xp, every such pair is visited exactly once. Only boxes whose
  // x ranges meet are compared: a box starting right of x_order[xp]'s x2 ends the sweep.
  template <typename OnPair>
  TF_HOST_DEVICE void visit(int32_t xp, OnPair&& on_pair) const {
    const int32_t a = x_order[xp];
    const T* box_a = boxes + 4 * static_cast<int64_t>(a);
    if (!has_positive_extent(box_a)) {
      return;
    }
    const T area_a = box_area(box_a);
    const int64_t group = groups[a];
    for (int32_t xq = xp + 1; xq < n; ++xq) {
      const int32_t b = x_order[xq];
      const T* box_b = boxes + 4 * static_cast<int64_t>(b);
      if (groups[b] != group || box_b[0] > box_a[2]) {
        break;
      }
      if (iou_above(box_a, area_a, box_b, box_area(box_b), iou_threshold)) {
        on_pair(a > b ? a : b, a > b ? b : a);
      }
    }
  }
};

// Pass 1: how many boxes can suppress each box.
template <typename T>
TF_HOST_DEVICE void count_suppressors(const NmsSweep<T>& sweep, int32_t xp, int32_t* counts) {
  sweep.visit(xp, [&](int32_t lower, int32_t) { atomic_fetch_add(counts + lower, 1); });
}

// Pass 2: the suppressors of box r go to edges[offsets[r] .. offsets[r] + counts[r]), in any order.
// Writes past `capacity` are dropped; the caller compares the total with the capacity.
template <typename T>
TF_HOST_DEVICE void write_suppressors(
    const NmsSweep<T>& sweep,
    int32_t xp,
    const int64_t* offsets,
    int32_t* cursors,
    int32_t* edges,
    int64_t capacity) {
  sweep.visit(xp, [&](int32_t lower, int32_t higher) {
    const int64_t at = offsets[lower] + atomic_fetch_add(cursors + lower, 1);
    if (at < capacity) {
      edges[at] = higher;
    }
  });
}

}  // namespace tinyfast
