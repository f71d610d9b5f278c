// A uniform grid over the boxes that greedy NMS has kept so far in one group, so that a new box is compared
// only with kept boxes whose cells it shares. Boxes meet only if their cell ranges meet: cell indices are a
// monotone function of the coordinates, so overlapping ranges give overlapping cell ranges.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "box_math.h"

namespace tinyfast {

template <typename T>
class KeptBoxGrid {
 public:
  // boxes: [count, 4] by rank, the group's boxes; the grid is sized for them.
  KeptBoxGrid(const T* boxes, int32_t count) : boxes_(boxes) {
    std::vector<double> sides;
    double x_min = INFINITY, y_min = INFINITY, x_max = -INFINITY, y_max = -INFINITY;
    for (int32_t r = 0; r < count; ++r) {
      const T* b = box(r);
      if (!has_positive_extent(b)) {
        continue;
      }
      x_min = std::min<double>(x_min, b[0]);
      y_min = std::min<double>(y_min, b[1]);
      x_max = std::max<double>(x_max, b[2]);
      y_max = std::max<double>(y_max, b[3]);
      sides.push_back(std::max<double>(b[2] - b[0], b[3] - b[1]));
    }
    if (sides.empty()) {
      return;
    }
    // Cells about the size of a typical box (the median, blind to a few huge ones), at most ~4 per box.
    std::nth_element(sides.begin(), sides.begin() + sides.size() / 2, sides.end());
    const double width = x_max - x_min;
    const double height = y_max - y_min;
    const double max_cells = 4.0 * static_cast<double>(sides.size()) + 64.0;
    cell_ = std::max({sides[sides.size() / 2], std::sqrt(width * height / max_cells), width / max_cells,
                      height / max_cells});
    x_origin_ = x_min;
    y_origin_ = y_min;
    if (!(std::isfinite(cell_) && cell_ > 0)) {  // extents beyond double's range: one cell holds all
      cell_ = INFINITY;
    }
    columns_ = cell_index(x_max, x_origin_) + 1;
    rows_ = cell_index(y_max, y_origin_) + 1;
    heads_.assign(static_cast<size_t>(columns_) * rows_, -1);
  }

  // Whether a kept box has IoU > threshold with box r.
  bool suppresses(int32_t r, double iou_threshold) const {
    const T* b = box(r);
    const T area = box_area(b);
    const auto overlaps = [&](int32_t kept) { return iou_above(box(kept), box_area(box(kept)), b, area, iou_threshold); };
    if (std::any_of(large_.begin(), large_.end(), overlaps)) {
      return true;
    }
    const CellRange range = cells_of(b);
    if (range.count() > static_cast<int64_t>(kept_.size())) {  // a huge box: fewer kept boxes than cells
      return std::any_of(kept_.begin(), kept_.end(), overlaps);
    }
    for (int32_t row = range.row_begin; row <= range.row_end; ++row) {
      for (int32_t column = range.column_begin; column <= range.column_end; ++column) {
        for (int32_t entry = heads_[row * columns_ + column]; entry != -1; entry = next_[entry]) {
          if (overlaps(ranks_[entry])) {
            return true;
          }
        }
      }
    }
    return false;
  }

  // Box r was kept: later boxes are compared with it.
  void add(int32_t r) {
    kept_.push_back(r);
    const CellRange range = cells_of(box(r));
    if (range.count() > kLargeCells) {
      large_.push_back(r);
      return;
    }
    for (int32_t row = range.row_begin; row <= range.row_end; ++row) {
      for (int32_t column = range.column_begin; column <= range.column_end; ++column) {
        int32_t& head = heads_[row * columns_ + column];
        next_.push_back(head);
        ranks_.push_back(r);
        head = static_cast<int32_t>(ranks_.size()) - 1;
      }
    }
  }

 private:
  // A kept box spanning more cells goes to a list that every query scans, so that one huge box does
  // not fill thousands of cells.
  static constexpr int64_t kLargeCells = 64;

  struct CellRange {
    int32_t column_begin, column_end, row_begin, row_end;
    int64_t count() const {
      return static_cast<int64_t>(column_end - column_begin + 1) * (row_end - row_begin + 1);
    }
  };

  const T* box(int32_t r) const {
    return boxes_ + 4 * static_cast<int64_t>(r);
  }

  int32_t cell_index(double value, double origin) const {
    const double index = std::floor((value - origin) / cell_);
    // Boxes outside the grid's extent (only those that can overlap nothing) land in the border cells.
    return index > 0 ? static_cast<int32_t>(std::min(index, 1.0e9)) : 0;
  }

  CellRange cells_of(const T* b) const {
    return {std::min(cell_index(b[0], x_origin_), columns_ - 1), std::min(cell_index(b[2], x_origin_), columns_ - 1),
            std::min(cell_index(b[1], y_origin_), rows_ - 1), std::min(cell_index(b[3], y_origin_), rows_ - 1)};
  }

  const T* boxes_;
  double cell_ = INFINITY, x_origin_ = 0, y_origin_ = 0;
  int32_t columns_ = 1, rows_ = 1;
  std::vector<int32_t> heads_ = {-1};  // first entry of each cell
  std::vector<int32_t> next_;          // entry -> next entry of the same cell
  std::vector<int32_t> ranks_;         // entry -> kept box
  std::vector<int32_t> large_;         // kept boxes spanning more than kLargeCells cells
  std::vector<int32_t> kept_;          // every kept box
};

}  // namespace tinyfast
