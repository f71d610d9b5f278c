// Point NMS on the CPU: points bucketed by group, groups in parallel, then the kept points of all groups
// merged by score (greedy_nms.h). Within a group, greedy NMS by rank compares each point only with the kept
// points whose disks cover its grid cell (KeptPointGrid), not with every kept point.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "ops/cpu/all_finite.h"
#include "ops/cpu/greedy_nms.h"
#include "ops/cpu/score_order.h"
#include "ops/point_nms.h"
#include "point_math.h"

namespace tinyfast {
namespace {

bool all_non_negative_in_parallel(const double* values, int64_t count) {
  return at::parallel_reduce(
      0, count, 1 << 14, true,
      [&](int64_t begin, int64_t end, bool ok) {
        int non_negative = 1;
        for (int64_t i = begin; i < end; ++i) {
          non_negative &= values[i] >= 0;
        }
        return ok && non_negative;
      },
      [](bool a, bool b) { return a && b; });
}

// Greedy NMS of one group of ranked points with a grid over the kept points' disks. The grid's cells are
// squares of two typical radii; only the cells that hold a point of the group exist (sorted by key, found
// by binary search), so the grid costs O(points) whatever their spread. A kept point is entered in the
// existing cells its disk's bounding square covers, and a point reads only its own cell: cell indices are
// a monotone function of the coordinates (clamped far out), so a point within a disk lies in a cell of the
// disk's square. Disks covering more than kLargeCells cells go to a list that every point reads.
class KeptPointGrid {
 public:
  // xs, ys, radii: the group's points by rank. Writes the ranks of the kept points to `kept`, at most `cap`
  // of them when cap >= 0, and returns how many. Rank r is kept iff no kept point suppresses it
  // (point_suppresses). The memory of earlier groups is reused.
  int32_t keep_greedily(
      const double* xs, const double* ys, const double* radii, int32_t count, int64_t cap, int32_t* kept) {
    xs_ = xs;
    ys_ = ys;
    radii_ = radii;
    if (!reset(count)) {  // no point can suppress another: all are kept, by rank
      const int32_t kept_count = cap < 0 ? count : static_cast<int32_t>(std::min<int64_t>(cap, count));
      for (int32_t r = 0; r < kept_count; ++r) {
        kept[r] = r;
      }
      return kept_count;
    }
    int32_t kept_count = 0;
    for (int32_t r = 0; r < count && kept_count != cap; ++r) {
      const double x = xs[r], y = ys[r];
      const auto suppresses_rank = [&](int32_t k) { return point_suppresses(xs[k], ys[k], radii[k], x, y); };
      if (std::any_of(large_.begin(), large_.end(), suppresses_rank)) {
        continue;
      }
      bool suppressed = false;
      for (int32_t e = heads_[cell_of_rank_[r]]; e != -1 && !suppressed; e = entries_[e].next) {
        const Entry& entry = entries_[e];
        suppressed = point_suppresses(entry.x, entry.y, entry.radius, x, y);
      }
      if (suppressed) {
        continue;
      }
      if (can_suppress(radii[r])) {
        add(r);
      }
      kept[kept_count++] = r;
    }
    return kept_count;
  }

 private:
  static constexpr int64_t kLargeCells = 64;
  static constexpr int32_t kRadiusSamples = 1024;
  // Cell indices are clamped to [-kMaxIndex, kMaxIndex]: points farther out share the border cells.
  static constexpr double kMaxIndex = 1 << 30;

  struct Entry {
    double x, y, radius;
    int32_t next;  // the cell's next entry, or -1
  };

  // Sizes the cells from the radii, finds each point's cell and empties the grid; false when no point can
  // suppress any other.
  bool reset(int32_t count) {
    entries_.clear();
    large_.clear();
    samples_.clear();
    bool any_suppressor = false;
    for (int32_t r = 0; r < count; ++r) {
      any_suppressor |= can_suppress(radii_[r]);
    }
    if (!any_suppressor) {
      return false;
    }
    // The median of about kRadiusSamples radii spread over the ranks; infinite ones (an infinite threshold)
    // span every cell anyway.
    const int32_t stride = std::max(1, count / kRadiusSamples);
    for (int32_t r = 0; r < count; r += stride) {
      if (can_suppress(radii_[r]) && std::isfinite(radii_[r])) {
        samples_.push_back(radii_[r]);
      }
    }
    double cell = 1.0;
    if (!samples_.empty()) {
      std::nth_element(samples_.begin(), samples_.begin() + samples_.size() / 2, samples_.end());
      cell = 2.0 * samples_[samples_.size() / 2];
    }
    inverse_cell_ = 1.0 / cell;
    if (!(std::isfinite(cell) && std::isfinite(inverse_cell_))) {  // radii near the ends of double's range
      inverse_cell_ = 1.0;
    }
    // The existing cells: the distinct keys of the points' cells, sorted, and each point's cell.
    keyed_.resize(count);
    for (int32_t r = 0; r < count; ++r) {
      keyed_[r] = {cell_key(cell_index(ys_[r]), cell_index(xs_[r])), r};
    }
    radix_sort(keyed_, scratch_);
    cell_keys_.clear();
    cell_of_rank_.resize(count);
    for (int32_t p = 0; p < count; ++p) {
      if (p == 0 || keyed_[p].key != keyed_[p - 1].key) {
        cell_keys_.push_back(keyed_[p].key);
      }
      cell_of_rank_[keyed_[p].index] = static_cast<int32_t>(cell_keys_.size()) - 1;
    }
    heads_.assign(cell_keys_.size(), -1);
    return true;
  }

  // floor(value / cell), clamped: monotone in the value. Never NaN: values are finite or +-inf.
  int64_t cell_index(double value) const {
    const double index = std::floor(value * inverse_cell_);
    return static_cast<int64_t>(std::min(std::max(index, -kMaxIndex), kMaxIndex));
  }

  // Keys ascend with (row, column).
  static uint64_t cell_key(int64_t row, int64_t column) {
    const auto offset = static_cast<int64_t>(kMaxIndex);
    return (static_cast<uint64_t>(row + offset) << 32) | static_cast<uint64_t>(column + offset);
  }

  void add(int32_t r) {
    const double x = xs_[r], y = ys_[r], radius = radii_[r];
    const int64_t column_begin = cell_index(x - radius), column_end = cell_index(x + radius);
    const int64_t row_begin = cell_index(y - radius), row_end = cell_index(y + radius);
    if ((column_end - column_begin + 1) * (row_end - row_begin + 1) > kLargeCells) {
      large_.push_back(r);
      return;
    }
    for (int64_t row = row_begin; row <= row_end; ++row) {
      const uint64_t last = cell_key(row, column_end);
      auto cell = std::lower_bound(cell_keys_.begin(), cell_keys_.end(), cell_key(row, column_begin));
      for (; cell != cell_keys_.end() && *cell <= last; ++cell) {
        int32_t& head = heads_[cell - cell_keys_.begin()];
        entries_.push_back({x, y, radius, head});
        head = static_cast<int32_t>(entries_.size()) - 1;
      }
    }
  }

  const double *xs_ = nullptr, *ys_ = nullptr, *radii_ = nullptr;
  double inverse_cell_ = 1.0;
  std::vector<KeyedIndex<uint64_t>> keyed_, scratch_;
  std::vector<uint64_t> cell_keys_;    // the existing cells, ascending
  std::vector<int32_t> cell_of_rank_;  // of each point, by rank
  std::vector<int32_t> heads_;         // first entry of each existing cell, or -1
  std::vector<Entry> entries_;
  std::vector<int32_t> large_;   // kept points whose disks cover more than kLargeCells cells
  std::vector<double> samples_;  // scratch of reset
};

// Point NMS of one group at a time, with the memory of one group reused for the next (one per thread).
// S: scores (float or double, both ordered exactly like any narrower float type).
template <typename S>
class GreedyPointNms {
 public:
  // members: the group's point indices, ascending. Writes the kept point indices to `kept` by score
  // descending (ties: lower index first), at most `cap` of them when cap >= 0; returns how many.
  int32_t run(const double* points,
              const double* radii,
              const S* scores,
              const int32_t* members,
              int32_t count,
              int64_t cap,
              int32_t* kept) {
    ranked_.resize(count);
    for (int32_t k = 0; k < count; ++k) {
      ranked_[k] = {descending_key(scores[members[k]]), members[k]};
    }
    radix_sort(ranked_, scratch_);
    xs_.resize(count);
    ys_.resize(count);
    radii_.resize(count);
    for (int32_t r = 0; r < count; ++r) {
      const int64_t i = ranked_[r].index;
      xs_[r] = points[2 * i];
      ys_[r] = points[2 * i + 1];
      radii_[r] = radii[i];
    }
    const int32_t kept_count = grid_.keep_greedily(xs_.data(), ys_.data(), radii_.data(), count, cap, kept);
    for (int32_t k = 0; k < kept_count; ++k) {
      kept[k] = ranked_[kept[k]].index;
    }
    return kept_count;
  }

 private:
  using Key = std::conditional_t<std::is_same_v<S, double>, uint64_t, uint32_t>;
  std::vector<KeyedIndex<Key>> ranked_, scratch_;
  std::vector<double> xs_, ys_, radii_;
  KeptPointGrid grid_;
};

template <typename S>
at::Tensor point_nms_typed(const PointNmsInput& in, double distance_threshold, int64_t max_per_group) {
  const int32_t n = static_cast<int32_t>(in.points.size(0));
  const at::Tensor points_c = in.points.to(at::kDouble).contiguous();
  const at::Tensor scores_c = in.scores.to(c10::CppTypeToScalarType<S>::value).contiguous();
  const at::Tensor sizes_c = in.sizes.to(at::kDouble).contiguous();
  const at::Tensor idxs_c = in.idxs.contiguous();
  const double* point_data = points_c.data_ptr<double>();
  const S* score_data = scores_c.data_ptr<S>();
  const double* size_data = sizes_c.data_ptr<double>();
  TORCH_CHECK_VALUE(all_finite_in_parallel(point_data, 2 * static_cast<int64_t>(n)),
                    "point_nms: points must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(all_finite_in_parallel(score_data, n),
                    "point_nms: scores must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(all_finite_in_parallel(size_data, n),
                    "point_nms: sizes must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(all_non_negative_in_parallel(size_data, n),
                    "point_nms: sizes must be >= 0 (found a negative size)");

  std::vector<double> radii(n);
  at::parallel_for(0, n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      radii[i] = suppression_radius(distance_threshold, size_data[i]);
    }
  });
  std::vector<int32_t> members, starts;
  bucket_by_group(idxs_c.data_ptr<int64_t>(), n, members, starts);
  return keep_each_group<GreedyPointNms<S>>(
      members, starts, score_data,
      [&](GreedyPointNms<S>& nms, const int32_t* group, int32_t count, int32_t* kept) {
        return nms.run(point_data, radii.data(), score_data, group, count, max_per_group, kept);
      });
}

at::Tensor keep_cpu(const PointNmsInput& in, const PointNmsOptions& options) {
  // Scores in float64 when given so, else float32 (either ranks any float type exactly).
  return in.scores.scalar_type() == at::kDouble
             ? point_nms_typed<double>(in, options.distance_threshold, options.cap())
             : point_nms_typed<float>(in, options.distance_threshold, options.cap());
}

constexpr PointNmsBackend kCpuBackend{&keep_cpu};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("point_nms", &point_nms_kernel<kCpuBackend>);
}

}  // namespace tinyfast
