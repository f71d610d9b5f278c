// The per-image grids of csrc/ops/box_buckets.h as the kernels read them: which listed boxes lie near a box.
#pragma once

#include <cstdint>

#include "box_math.h"

namespace tinyfast {

template <typename T>
struct BoxGrid {
  // Per image [B], as in BoxBuckets.
  const T* lo_x;
  const T* lo_y;
  const T* x_cells_per_unit;
  const T* y_cells_per_unit;
  const T* columns;
  const T* rows;
  const int64_t* cell_offsets;
  const int64_t* large_cells;
  const int64_t* cell_starts;  // [cells + 1]
  const int64_t* cell_items;   // indices into all images' listed boxes, cell by cell
};

// cell_along (ops/box_buckets.cpp) for one coordinate: the same float operations, so a box and the boxes
// listed in the grid agree on cells. Its floor(), clamp to [0, cells - 1] and cast are one clamp and a
// truncation here: equal for the integer-valued upper bound.
template <typename T>
TF_HOST_DEVICE int64_t grid_cell(T v, T origin, T cells_per_unit, T cells) {
  T cell = (v - origin) * cells_per_unit;
  if (cell != cell) {  // NaN, from inf * 0 (a union wider than the largest float): cell 0, as nan_to_num
    cell = T(0);
  }
  return static_cast<int64_t>(tf_min(tf_max(cell, T(0)), cells - T(1)));
}

// Calls visit(item) for the listed boxes of image `image` that can overlap `box` (any box with which it
// shares a positive area is among them; some may come more than once), until visit returns true. When the
// box covers more cells than the image has boxes, visits the image's boxes [first, first + count) instead.
template <typename T, typename Visit>
TF_HOST_DEVICE void for_each_box_near(
    const BoxGrid<T>& grid, int64_t image, int64_t first, int64_t count, const T* box, Visit visit) {
  const int64_t column_begin =
      grid_cell(box[0], grid.lo_x[image], grid.x_cells_per_unit[image], grid.columns[image]);
  const int64_t column_end =
      grid_cell(box[2], grid.lo_x[image], grid.x_cells_per_unit[image], grid.columns[image]);
  const int64_t row_begin =
      grid_cell(box[1], grid.lo_y[image], grid.y_cells_per_unit[image], grid.rows[image]);
  const int64_t row_end = grid_cell(box[3], grid.lo_y[image], grid.y_cells_per_unit[image], grid.rows[image]);
  if ((column_end - column_begin + 1) * (row_end - row_begin + 1) > count) {
    for (int64_t item = first; item < first + count; ++item) {
      if (visit(item)) {
        return;
      }
    }
    return;
  }
  const int64_t columns = static_cast<int64_t>(grid.columns[image]);
  const auto visit_cell = [&](int64_t cell) {
    for (int64_t k = grid.cell_starts[cell]; k < grid.cell_starts[cell + 1]; ++k) {
      if (visit(grid.cell_items[k])) {
        return true;
      }
    }
    return false;
  };
  for (int64_t row = row_begin; row <= row_end; ++row) {
    for (int64_t column = column_begin; column <= column_end; ++column) {
      if (visit_cell(grid.cell_offsets[image] + row * columns + column)) {
        return;
      }
    }
  }
  visit_cell(grid.large_cells[image]);
}

}  // namespace tinyfast
