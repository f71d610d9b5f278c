// Batched NMS on the CPU. Boxes are bucketed by group; groups run in parallel, each ranked by score and
// walked greedily, a box compared only with the kept boxes of the grid cells it covers; the kept boxes of
// all groups are then merged by score.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>
#include <vector>

#include "ops/batched_nms.h"
#include "ops/cpu/kept_box_grid.h"

namespace tinyfast {
namespace {

// Box indices grouped by group id (groups ascending, indices ascending within a group), and the first
// position of every group plus n at the end.
void bucket_by_group(const int64_t* idxs, int32_t n, std::vector<int32_t>& bucketed, std::vector<int32_t>& starts) {
  bucketed.resize(n);
  const auto [lowest, highest] = std::minmax_element(idxs, idxs + n);
  const uint64_t span = static_cast<uint64_t>(*highest) - static_cast<uint64_t>(*lowest);
  if (span < 4 * static_cast<uint64_t>(n) + 1024) {  // dense ids (image * classes + class): counting sort
    std::vector<int32_t> next(span + 2, 0);
    for (int32_t i = 0; i < n; ++i) {
      ++next[idxs[i] - *lowest + 1];
    }
    std::partial_sum(next.begin(), next.end(), next.begin());
    for (int32_t i = 0; i < n; ++i) {
      bucketed[next[idxs[i] - *lowest]++] = i;
    }
  } else {
    std::iota(bucketed.begin(), bucketed.end(), 0);
    std::stable_sort(bucketed.begin(), bucketed.end(), [&](int32_t a, int32_t b) { return idxs[a] < idxs[b]; });
  }
  starts.clear();
  for (int32_t p = 0; p < n; ++p) {
    if (p == 0 || idxs[bucketed[p]] != idxs[bucketed[p - 1]]) {
      starts.push_back(p);
    }
  }
  starts.push_back(n);
}

template <typename T>
struct RankedGroups {
  std::vector<int32_t> order;   // original index of each rank
  std::vector<int32_t> starts;  // first rank of each group, then n
  std::vector<T> boxes;         // [n, 4] by rank
};

template <typename T>
RankedGroups<T> rank_groups(const T* boxes, const double* scores, const int64_t* idxs, int32_t n) {
  RankedGroups<T> ranked;
  bucket_by_group(idxs, n, ranked.order, ranked.starts);
  ranked.boxes.resize(4 * static_cast<size_t>(n));
  const int64_t num_groups = static_cast<int64_t>(ranked.starts.size()) - 1;
  at::parallel_for(0, num_groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int32_t first = ranked.starts[g];
      const int32_t size = ranked.starts[g + 1] - first;
      int32_t* order = ranked.order.data() + first;
      // Sorting (key, index) pairs rather than indices with an indirect comparator keeps the sort in cache.
      std::vector<std::pair<double, int32_t>> by_score(size);
      for (int32_t k = 0; k < size; ++k) {
        by_score[k] = {-scores[order[k]], order[k]};
      }
      std::sort(by_score.begin(), by_score.end());
      for (int32_t k = 0; k < size; ++k) {
        order[k] = by_score[k].second;
        std::copy_n(boxes + 4 * static_cast<int64_t>(order[k]), 4, ranked.boxes.data() + 4 * static_cast<int64_t>(first + k));
      }
    }
  });
  return ranked;
}

// Greedy NMS on the boxes of one group, by rank: a box is kept iff no kept box has IoU > threshold with it.
template <typename T>
void keep_greedily(const T* boxes, int32_t count, double iou_threshold, int64_t max_per_group, uint8_t* kept) {
  KeptBoxGrid<T> grid(boxes, count);
  int64_t kept_count = 0;
  for (int32_t r = 0; r < count && kept_count != max_per_group; ++r) {
    const T* box = boxes + 4 * static_cast<int64_t>(r);
    if (!has_positive_extent(box)) {  // never suppressed, suppresses nothing
      kept[r] = 1;
      ++kept_count;
    } else if (!grid.suppresses(r, iou_threshold)) {
      grid.add(r);
      kept[r] = 1;
      ++kept_count;
    }
  }
}

template <typename T>
std::vector<uint8_t> keep_by_rank(const RankedGroups<T>& ranked, double iou_threshold, int64_t max_per_group) {
  std::vector<uint8_t> kept(ranked.order.size(), 0);
  const int64_t num_groups = static_cast<int64_t>(ranked.starts.size()) - 1;
  at::parallel_for(0, num_groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int32_t first = ranked.starts[g];
      keep_greedily(
          ranked.boxes.data() + 4 * static_cast<int64_t>(first), ranked.starts[g + 1] - first, iou_threshold,
          max_per_group, kept.data() + first);
    }
  });
  return kept;
}

// Each group's kept boxes are already by (score descending, index ascending): merge the groups.
template <typename T>
at::Tensor merge_kept(const RankedGroups<T>& ranked, const std::vector<uint8_t>& kept, const double* scores) {
  const auto after = [&](int32_t a, int32_t b) { return scores[a] < scores[b] || (scores[a] == scores[b] && a > b); };
  // Heap entries: (rank of the group's next kept box, end of the group).
  std::vector<std::pair<int32_t, int32_t>> heads;
  const auto next_kept = [&](int32_t r, int32_t end) {
    while (r < end && !kept[r]) {
      ++r;
    }
    return r;
  };
  for (size_t g = 0; g + 1 < ranked.starts.size(); ++g) {
    const int32_t r = next_kept(ranked.starts[g], ranked.starts[g + 1]);
    if (r < ranked.starts[g + 1]) {
      heads.emplace_back(r, ranked.starts[g + 1]);
    }
  }
  const auto heap_after = [&](const std::pair<int32_t, int32_t>& a, const std::pair<int32_t, int32_t>& b) {
    return after(ranked.order[a.first], ranked.order[b.first]);
  };
  std::priority_queue<std::pair<int32_t, int32_t>, std::vector<std::pair<int32_t, int32_t>>, decltype(heap_after)>
      queue(heap_after, std::move(heads));
  const int64_t total = std::count(kept.begin(), kept.end(), uint8_t{1});
  at::Tensor keep = at::empty({total}, at::kLong);
  int64_t* out = keep.data_ptr<int64_t>();
  while (!queue.empty()) {
    auto [r, end] = queue.top();
    queue.pop();
    *out++ = ranked.order[r];
    r = next_kept(r + 1, end);
    if (r < end) {
      queue.emplace(r, end);
    }
  }
  return keep;
}

template <typename T>
bool all_finite(const T* values, int64_t count) {
  return at::parallel_reduce(
      0, count, 1 << 14, true,
      [&](int64_t begin, int64_t end, bool ok) {
        for (int64_t i = begin; i < end && ok; ++i) {
          ok = std::isfinite(values[i]);
        }
        return ok;
      },
      [](bool a, bool b) { return a && b; });
}

template <typename T>
at::Tensor batched_nms_typed(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs, double iou_threshold, int64_t max_per_group) {
  const int32_t n = static_cast<int32_t>(boxes.size(0));
  const at::Tensor boxes_c = boxes.to(c10::CppTypeToScalarType<T>::value).contiguous();
  const at::Tensor scores_c = scores.to(at::kDouble).contiguous();
  const at::Tensor idxs_c = idxs.contiguous();
  TORCH_CHECK_VALUE(all_finite(boxes_c.data_ptr<T>(), 4 * static_cast<int64_t>(n)), "batched_nms: boxes must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(all_finite(scores_c.data_ptr<double>(), n), "batched_nms: scores must be finite (found NaN or inf)");

  const double* score_data = scores_c.data_ptr<double>();
  const RankedGroups<T> ranked = rank_groups(boxes_c.data_ptr<T>(), score_data, idxs_c.data_ptr<int64_t>(), n);
  const std::vector<uint8_t> kept = keep_by_rank(ranked, iou_threshold, max_per_group);
  return merge_kept(ranked, kept, score_data);
}

at::Tensor batched_nms_cpu(
    const at::Tensor& boxes,
    const at::Tensor& scores,
    const at::Tensor& idxs,
    double iou_threshold,
    int64_t max_per_group) {
  check_batched_nms_args(boxes, scores, idxs, iou_threshold, max_per_group);
  if (boxes.size(0) == 0) {
    return at::empty({0}, idxs.options());
  }
  return boxes.scalar_type() == at::kDouble
      ? batched_nms_typed<double>(boxes, scores, idxs, iou_threshold, max_per_group)
      : batched_nms_typed<float>(boxes, scores, idxs, iou_threshold, max_per_group);
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("batched_nms", &batched_nms_cpu);
}

}  // namespace tinyfast
