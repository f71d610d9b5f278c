// Greedy NMS of one group of ranked boxes on the CPU, with a uniform grid over the boxes kept so far: a box
// is compared only with the kept boxes whose cells it shares. Boxes meet only if their cell ranges meet:
// cell indices are a monotone function of the coordinates, so overlapping ranges give overlapping cell
// ranges.
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
  // boxes: the group's boxes [count, 4] by rank. Writes the ranks of the kept boxes to `kept`, at most
  // `cap` of them when cap >= 0, and returns how many. Box r is kept iff no kept box has IoU > threshold
  // with it; boxes without positive extent are always kept (they can neither suppress nor be suppressed).
  // The memory of earlier groups is reused.
  int32_t keep_greedily(const T* boxes, int32_t count, double iou_threshold, int64_t cap, int32_t* kept) {
    reset(boxes, count);
    int32_t kept_count = 0;
    for (int32_t r = 0; r < count && kept_count != cap; ++r) {
      const T* b = box(r);
      if (has_positive_extent(b)) {
        const T area = box_area(b);
        const auto suppresses = [&](const T* kept_box, T kept_area) {
          return interiors_meet(kept_box, b) && iou_above(kept_box, kept_area, b, area, iou_threshold);
        };
        const auto suppresses_rank = [&](int32_t k) { return suppresses(box(k), box_area(box(k))); };
        if (!large_.empty() && std::any_of(large_.begin(), large_.end(), suppresses_rank)) {
          continue;
        }
        const CellRange& range = ranges_[r];
        if (range.count() > kept_count) {  // a huge box: fewer kept boxes than cells
          if (std::any_of(kept, kept + kept_count, suppresses_rank)) {
            continue;
          }
        } else if (any_entry_in(range, suppresses)) {
          continue;
        }
        add(b, area, r, range);
      }
      kept[kept_count++] = r;
    }
    return kept_count;
  }

 private:
  // A kept box spanning more cells goes to a list that every query scans, so that one huge box does
  // not fill thousands of cells.
  static constexpr int64_t kLargeCells = 64;
  static constexpr int32_t kSideSamples = 1024;

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

  // Empties the grid and sizes it for the group, and finds the cells of every box.
  void reset(const T* boxes, int32_t count) {
    boxes_ = boxes;
    entries_.clear();
    large_.clear();
    sides_.clear();
    // The extents of the boxes with positive extent, branch-free for the compiler to vectorize.
    T x_min = INFINITY, y_min = INFINITY, x_max = -INFINITY, y_max = -INFINITY;
    for (int32_t r = 0; r < count; ++r) {
      const T* b = box(r);
      const bool positive = has_positive_extent(b);
      x_min = std::min(x_min, positive ? b[0] : T(INFINITY));
      y_min = std::min(y_min, positive ? b[1] : T(INFINITY));
      x_max = std::max(x_max, positive ? b[2] : T(-INFINITY));
      y_max = std::max(y_max, positive ? b[3] : T(-INFINITY));
    }
    // Box sides from about kSideSamples boxes spread over the ranks.
    const int32_t stride = std::max(1, count / kSideSamples);
    for (int32_t r = 0; r < count; r += stride) {
      const T* b = box(r);
      if (has_positive_extent(b)) {
        sides_.push_back(std::max(b[2] - b[0], b[3] - b[1]));
      }
    }
    T inverse_cell = 0;  // one cell holds all
    const bool any_positive = x_min <= x_max;
    const T x_origin = any_positive ? x_min : T(0);
    const T y_origin = any_positive ? y_min : T(0);
    if (!sides_.empty()) {
      // Cells about twice the size of a typical box (the median, blind to a few huge ones), so that most
      // boxes span one or two cells per axis; at most ~4 cells per box.
      std::nth_element(sides_.begin(), sides_.begin() + sides_.size() / 2, sides_.end());
      const double width = static_cast<double>(x_max) - x_min;
      const double height = static_cast<double>(y_max) - y_min;
      const double max_cells = 4.0 * count + 64.0;
      const double cell = std::max({2.0 * sides_[sides_.size() / 2], std::sqrt(width * height / max_cells),
                                    width / max_cells, height / max_cells});
      if (std::isfinite(cell) && cell > 0) {  // else extents beyond double's range
        inverse_cell = static_cast<T>(1.0 / cell);
      }
    }
    // (coordinate - origin) * inverse cell, each step rounded, is monotone in the coordinate; clamping (NaN
    // from 0 * inf included) keeps it so.
    const auto cell_index = [inverse_cell](T value, T origin, T last) {
      const T index = (value - origin) * inverse_cell;
      return static_cast<int32_t>(index > 0 ? std::min(index, last) : T(0));
    };
    constexpr T kMaxIndex = 1 << 30;
    columns_ = any_positive ? cell_index(x_max, x_origin, kMaxIndex) + 1 : 1;
    const int32_t rows = any_positive ? cell_index(y_max, y_origin, kMaxIndex) + 1 : 1;
    heads_.assign(static_cast<size_t>(columns_) * rows, -1);
    ranges_.resize(count);
    for (int32_t r = 0; r < count; ++r) {  // branch-free, for the compiler to vectorize
      const T* b = box(r);
      ranges_[r] = {cell_index(b[0], x_origin, columns_ - 1), cell_index(b[2], x_origin, columns_ - 1),
                    cell_index(b[1], y_origin, rows - 1), cell_index(b[3], y_origin, rows - 1)};
    }
  }

  template <typename Predicate>
  bool any_entry_in(const CellRange& range, const Predicate& predicate) const {
    for (int32_t row = range.row_begin; row <= range.row_end; ++row) {
      for (int32_t column = range.column_begin; column <= range.column_end; ++column) {
        for (int32_t e = heads_[cell(column, row)]; e != -1; e = entries_[e].next) {
          if (predicate(entries_[e].box, entries_[e].area)) {
            return true;
          }
        }
      }
    }
    return false;
  }

  void add(const T* b, T area, int32_t r, const CellRange& range) {
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
    return static_cast<size_t>(row) * columns_ + column;
  }

  const T* boxes_ = nullptr;
  int32_t columns_ = 1;
  std::vector<CellRange> ranges_;  // of each box, by rank
  std::vector<int32_t> heads_;     // first entry of each cell, or -1
  std::vector<Entry> entries_;
  std::vector<int32_t> large_;     // kept boxes spanning more than kLargeCells cells
  std::vector<T> sides_;           // scratch of reset
};

}  // namespace tinyfast
