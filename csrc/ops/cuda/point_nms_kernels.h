// The point NMS CUDA kernels: a sweep by x that lists which points suppress which (the rules of
// point_math.h, shared with the CPU kernel), and their raw-pointer launchers, without torch headers so that
// the .cu file compiles in seconds. Greedy NMS is then resolved on the lists by the launchers of
// batched_nms_kernels.h, which take any suppression lists.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "point_math.h"

namespace tinyfast {

// Points are ranked by (group, score descending, index ascending): a smaller rank is a point that greedy NMS
// considers first. The sweep reads them in x order, sorted by (group, x), so that the points it compares are
// next to each other in memory.
struct PointSweep {
  const double* x_points;   // [n, 2], in x order
  const double* x_radii;    // [n] suppression radii, in x order
  const double* x_reach;    // [n]: the largest radius of the point's group (0 if none can suppress)
  const int64_t* x_groups;  // [n], in x order
  const int32_t* x_ranks;   // [n]: rank of each point in x order
  int32_t n;

  // Calls on_pair(lower_rank, higher_rank) for each pair of one group in which the point of the higher rank
  // suppresses the other and whose first point in x order is at xp. Over all xp, every such pair is visited
  // exactly once. Only points closer in x than the group's largest radius are compared.
  template <typename OnPair>
  TF_HOST_DEVICE void visit(int32_t xp, OnPair&& on_pair) const {
    const double xa = x_points[2 * static_cast<int64_t>(xp)];
    const double ya = x_points[2 * static_cast<int64_t>(xp) + 1];
    const double reach = x_reach[xp];
    const int64_t group = x_groups[xp];
    const int32_t a = x_ranks[xp];
    for (int32_t xq = xp + 1; xq < n; ++xq) {
      const double xb = x_points[2 * static_cast<int64_t>(xq)];
      if (x_groups[xq] != group || !(xb - xa < reach)) {
        break;
      }
      const double yb = x_points[2 * static_cast<int64_t>(xq) + 1];
      const int32_t b = x_ranks[xq];
      const bool suppressed = a < b ? point_suppresses(xa, ya, x_radii[xp], xb, yb)
                                    : point_suppresses(xb, yb, x_radii[xq], xa, ya);
      if (suppressed) {
        on_pair(a > b ? a : b, a > b ? b : a);
      }
    }
  }
};

namespace cuda {

// counts[r] += the number of points that suppress rank r.
void launch_count_point_suppressors(const PointSweep& sweep, int32_t* counts, cudaStream_t stream);

// The suppressors of rank r go to edges[offsets[r] .. offsets[r] + counts[r]), in any order; writes past
// `capacity` are dropped (the caller compares the total with it).
void launch_write_point_suppressors(const PointSweep& sweep,
                                    const int64_t* offsets,
                                    int32_t* cursors,
                                    int32_t* edges,
                                    int64_t capacity,
                                    cudaStream_t stream);

}  // namespace cuda
}  // namespace tinyfast
