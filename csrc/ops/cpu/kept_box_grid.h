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
  // Empties the grid and sizes it for one group's boxes ([count, 4], by rank, all with positive extent
  // when they are queried); the memory of earlier groups is reused.
  void reset(const T* boxes, int32_t count) {
    boxes_ = boxes;
    entries_.clear();
    large_.clear();
    kept_.clear();
    sides_.clear();
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
      sides_.push_back(std::max(b[2] - b[0], b[3] - b[1]));
    }
    inverse_cell_ = 0;  // one cell holds all
    x_origin_ = sides_.empty() ? 0 : x_min;
    y_origin_ = sides_.empty() ? 0 : y_min;
    if (!sides_.empty()) {
      // Cells about the size of a typical box (the median, blind to a few huge ones), at most ~4 per box.
      std::nth_element(sides_.begin(), sides_.begin() + sides_.size() / 2, sides_.end());
      const double width = x_max - x_min;
      const double height = y_max - y_min;
      const double max_cells = 4.0 * static_cast<double>(sides_.size()) + 64.0;
      const double cell = std::max({static_cast<double>(sides_[sides_.size() / 2]),
                                    std::sqrt(width * height / max_cells), width / max_cells, height / max_cells});
      if (std::isfinite(cell) && cell > 0) {  // else extents beyond double's range
        inverse_cell_ = 1.0 / cell;
      }
    }
    constexpr int32_t kMaxIndex = 1000000000;
    last_column_ = cell_index(x_max, x_origin_, kMaxIndex);
    last_row_ = cell_index(y_max, y_origin_, kMaxIndex);
    heads_.assign(static_cast<size_t>(last_column_ + 1) * (last_row_ + 1), -1);
  }

  // Keeps box r (by rank, with positive extent) unless a kept box has IoU > threshold with it; returns
  // whether it was kept.
  bool keep_unless_suppressed(int32_t r, double iou_threshold) {
    const T* b = box(r);
    const T area = box_area(b);
    const auto suppresses = [&](const T* kept, T kept_area) {
      return interiors_meet(kept, b) && iou_above(kept, kept_area, b, area, iou_threshold);
    };
    const auto suppresses_rank = [&](int32_t kept) { return suppresses(box(kept), box_area(box(kept))); };
    if (std::any_of(large_.begin(), large_.end(), suppresses_rank)) {
      return false;
    }
    const CellRange range = cells_of(b);
    if (range.count() > static_cast<int64_t>(kept_.size())) {  // a huge box: fewer kept boxes than cells
      if (std::any_of(kept_.begin(), kept_.end(), suppresses_rank)) {
        return false;
      }
    } else {
      for (int32_t row = range.row_begin; row <= range.row_end; ++row) {
        for (int32_t column = range.column_begin; column <= range.column_end; ++column) {
          for (int32_t e = heads_[cell(column, row)]; e != -1; e = entries_[e].next) {
            if (suppresses(entries_[e].box, entries_[e].area)) {
              return false;
            }
          }
        }
      }
    }
    add(r, b, area, range);
    return true;
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

  // A kept box in one cell's list, with its coordinates at hand.
  struct Entry {
    T box[4];
    T area;
    int32_t next;  // the cell's next entry, or -1
  };

  void add(int32_t r, const T* b, T area, const CellRange& range) {
    kept_.push_back(r);
    if (range.count() > kLargeCells) {
      large_.push_back(r);
      return;
    }
    for (int32_t row = range.row_begin; row <= range.row_end; ++row) {
      for (int32_t column = range.column_begin; column <= range.column_end; ++column) {
        int32_t& head = heads_[cell(column, row)];
        entries_.push_back({{b[0], b[1], b[2], b[3]}, area, head});
        head = static_cast<int32_t>(entries_.size()) - 1;
      }
    }
  }

  const T* box(int32_t r) const {
    return boxes_ + 4 * static_cast<int64_t>(r);
  }

  size_t cell(int32_t column, int32_t row) const {
    return static_cast<size_t>(row) * (last_column_ + 1) + column;
  }

  // Multiplying by the inverse cell size is monotone too. Coordinates below the origin (only those of boxes
  // that overlap nothing) land in the first cell.
  int32_t cell_index(double value, double origin, int32_t last) const {
    const double index = (value - origin) * inverse_cell_;
    return index > 0 ? static_cast<int32_t>(std::min(index, static_cast<double>(last))) : 0;
  }

  CellRange cells_of(const T* b) const {
    return {cell_index(b[0], x_origin_, last_column_), cell_index(b[2], x_origin_, last_column_),
            cell_index(b[1], y_origin_, last_row_), cell_index(b[3], y_origin_, last_row_)};
  }

  const T* boxes_ = nullptr;
  double inverse_cell_ = 0, x_origin_ = 0, y_origin_ = 0;
  int32_t last_column_ = 0, last_row_ = 0;
  std::vector<int32_t> heads_;    // first entry of each cell, or -1
  std::vector<Entry> entries_;
  std::vector<int32_t> large_;    // kept boxes spanning more than kLargeCells cells
  std::vector<int32_t> kept_;     // every kept box
  std::vector<T> sides_;          // scratch of reset
};

}  // namespace tinyfast
