// The boxes of each image bucketed on a uniform grid over their union (CSR lists built with ATen ops on the
// boxes' device, without a host sync), so that a kernel reads only the boxes listed in the cells it looks at.
// Shared by the ops that pair many queries (points, anchors) with few boxes (GTs, ignore regions).
#pragma once

#include <ATen/ATen.h>

#include "box_grid.h"

namespace tinyfast {

struct BoxBuckets {
  // Per image [B]: the union of its boxes with positive extent (an empty union, +inf..-inf, without any),
  // cells per unit of length along x and y, columns and rows (in the boxes' type), its first cell and the
  // cell that lists its boxes spanning more cells than a box is listed in.
  at::Tensor lo_x, lo_y, hi_x, hi_y;
  at::Tensor x_cells_per_unit, y_cells_per_unit;
  at::Tensor columns, rows;
  at::Tensor cell_offsets;
  at::Tensor large_cells;
  at::Tensor cell_starts;  // [cells + 1]
  at::Tensor cell_items;   // box indices (into all images' boxes), cell by cell
};

// boxes: [G, 4] contiguous, floating; counts: [B] int64, boxes per image. Boxes with x2 <= x1 or y2 <= y1
// can overlap nothing and are listed nowhere; a box spanning more than max_cells_per_box cells goes to its
// image's list of large boxes, which every query of the image reads. Memory: G x max_cells_per_box keys.
BoxBuckets bucket_boxes(const at::Tensor& boxes, const at::Tensor& counts, int64_t max_cells_per_box);

// The cell of coordinates v along one axis: a monotone function of v, so that a point strictly inside a
// listed box lies in one of the cells the box is listed in. grid_cell (box_grid.h) is the same function for
// the kernels.
at::Tensor cell_along(const at::Tensor& v,
                      const at::Tensor& origin,
                      const at::Tensor& cells_per_unit,
                      const at::Tensor& cells);

// [] bool: counts [B] int64 (checked >= 0 apart) add up to total, without an int64 wrap-around: each count
// and each partial sum is at most total (a wrap would first exceed it, by less than 2 * total).
at::Tensor counts_sum_to(const at::Tensor& counts, int64_t total);

template <typename T>
BoxGrid<T> grid_view(const BoxBuckets& buckets) {
  return BoxGrid<T>{buckets.lo_x.data_ptr<T>(),
                    buckets.lo_y.data_ptr<T>(),
                    buckets.x_cells_per_unit.data_ptr<T>(),
                    buckets.y_cells_per_unit.data_ptr<T>(),
                    buckets.columns.data_ptr<T>(),
                    buckets.rows.data_ptr<T>(),
                    buckets.cell_offsets.data_ptr<int64_t>(),
                    buckets.large_cells.data_ptr<int64_t>(),
                    buckets.cell_starts.data_ptr<int64_t>(),
                    buckets.cell_items.data_ptr<int64_t>()};
}

}  // namespace tinyfast
