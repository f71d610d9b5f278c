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
  static constexpr double kHugeSides = 64.0;
  // A bound the grid never reaches (width / cell <= max_cells), against rounding.
  static constexpr int32_t kMaxIndex = 1 << 30;

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
  //
  // The grid stays bounded for any finite boxes: cells about twice a typical box side, at most ~4 per box,
  // over the extent of the boxes that are not huge (a side above kHugeSides typical sides: they span many
  // cells and end in large_ anyway, and one of them must not stretch the grid so that every other box shares
  // a cell). Boxes outside the extent are clamped to its border cells, which keeps cell ranges monotone.
  // Extents and cell indices are computed in double on half coordinates, which cannot overflow.
  void reset(const T* boxes, int32_t count) {
    boxes_ = boxes;
    entries_.clear();
    large_.clear();
    sides_.clear();
    // Box sides from about kSideSamples boxes spread over the ranks.
    const int32_t stride = std::max(1, count / kSideSamples);
    for (int32_t r = 0; r < count; r += stride) {
      const T* b = box(r);
      if (has_positive_extent(b)) {
        sides_.push_back(side_of(b));
      }
    }
    double cell = 0;  // half coordinates per cell; 0: one cell holds all
    double x_min = INFINITY, y_min = INFINITY, x_max = -INFINITY, y_max = -INFINITY;
    if (!sides_.empty()) {
      std::nth_element(sides_.begin(), sides_.begin() + sides_.size() / 2, sides_.end());
      const double typical = sides_[sides_.size() / 2];
      const double huge = kHugeSides * typical;
      for (int32_t r = 0; r < count; ++r) {  // branch-free, for the compiler to vectorize
        const T* b = box(r);
        const bool listed = has_positive_extent(b) && side_of(b) <= huge;
        x_min = std::min(x_min, listed ? 0.5 * b[0] : INFINITY);
        y_min = std::min(y_min, listed ? 0.5 * b[1] : INFINITY);
        x_max = std::max(x_max, listed ? 0.5 * b[2] : -INFINITY);
        y_max = std::max(y_max, listed ? 0.5 * b[3] : -INFINITY);
      }
      if (x_min <= x_max) {
        const double width = x_max - x_min, height = y_max - y_min;
        const double max_cells = 4.0 * count + 64.0;
        // typical is a full side, the grid is in half coordinates: cells of two sides.
        cell =
            std::max({typical, std::sqrt(width * height / max_cells), width / max_cells, height / max_cells});
      }
    }
    x_origin_ = cell > 0 ? x_min : 0.0;
    y_origin_ = cell > 0 ? y_min : 0.0;
    inverse_cell_ = cell > 0 ? 1.0 / cell : 0.0;
    columns_ = cell > 0 ? cell_index(x_max, x_origin_, kMaxIndex) + 1 : 1;
    const int32_t rows = cell > 0 ? cell_index(y_max, y_origin_, kMaxIndex) + 1 : 1;
    heads_.assign(static_cast<size_t>(columns_) * rows, -1);
    ranges_.resize(count);
    for (int32_t r = 0; r < count; ++r) {  // branch-free, for the compiler to vectorize
      const T* b = box(r);
      ranges_[r] = {cell_index(0.5 * b[0], x_origin_, columns_ - 1),
                    cell_index(0.5 * b[2], x_origin_, columns_ - 1),
                    cell_index(0.5 * b[1], y_origin_, rows - 1), cell_index(0.5 * b[3], y_origin_, rows - 1)};
    }
  }

  // The larger side, in double (no overflow for float boxes; inf for a float64 box wider than double's
  // range).
  static double side_of(const T* b) {
    return std::max(static_cast<double>(b[2]) - b[0], static_cast<double>(b[3]) - b[1]);
  }

  // (half coordinate - origin) / cell, clamped to [0, last]: monotone in the coordinate, and
  // width / cell <= max_cells bounds the grid.
  int32_t cell_index(double half_value, double origin, int32_t last) const {
    const double index = (half_value - origin) * inverse_cell_;
    return static_cast<int32_t>(index > 0 ? std::min(index, static_cast<double>(last)) : 0.0);
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
  double x_origin_ = 0, y_origin_ = 0, inverse_cell_ = 0;
  int32_t columns_ = 1;
  std::vector<CellRange> ranges_;  // of each box, by rank
  std::vector<int32_t> heads_;     // first entry of each cell, or -1
  std::vector<Entry> entries_;
  std::vector<int32_t> large_;  // kept boxes spanning more than kLargeCells cells
  std::vector<double> sides_;   // scratch of reset
};

}  // namespace tinyfast
