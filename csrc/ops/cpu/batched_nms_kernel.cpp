// Batched NMS on the CPU. Boxes are bucketed by group; each group is ranked by score and swept by x1 in
// parallel; the shared sweep lists, for every box, the boxes that can suppress it; greedy NMS then walks
// each group in rank order; the kept boxes of all groups are merged by score.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>
#include <vector>

#include "ops/batched_nms.h"
#include "ops/batched_nms_sweep.h"

namespace tinyfast {
namespace {

constexpr int64_t kSweepGrain = 1024;

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
  std::vector<int32_t> order;     // original index of each rank
  std::vector<int32_t> starts;    // first rank of each group, then n
  std::vector<T> x_boxes;         // [n, 4] sorted by (group, x1, rank)
  std::vector<int64_t> x_groups;  // in x order
  std::vector<int32_t> x_ranks;   // in x order
};

template <typename T>
RankedGroups<T> rank_groups(const T* boxes, const double* scores, const int64_t* idxs, int32_t n) {
  RankedGroups<T> ranked;
  bucket_by_group(idxs, n, ranked.order, ranked.starts);
  ranked.x_boxes.resize(4 * static_cast<size_t>(n));
  ranked.x_groups.resize(n);
  ranked.x_ranks.resize(n);
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
      std::vector<std::pair<T, int32_t>> by_x1(size);
      for (int32_t k = 0; k < size; ++k) {
        order[k] = by_score[k].second;
        by_x1[k] = {boxes[4 * static_cast<int64_t>(order[k])], first + k};
      }
      std::sort(by_x1.begin(), by_x1.end());
      for (int32_t k = 0; k < size; ++k) {
        const int32_t rank = by_x1[k].second;
        const int64_t index = ranked.order[rank];
        std::copy_n(boxes + 4 * index, 4, ranked.x_boxes.data() + 4 * static_cast<int64_t>(first + k));
        ranked.x_groups[first + k] = idxs[index];
        ranked.x_ranks[first + k] = rank;
      }
    }
  });
  return ranked;
}

// Greedy NMS on ranks [begin, end) of one group: a box is kept iff none of its suppressors was kept.
void keep_greedily(
    int32_t begin,
    int32_t end,
    const int64_t* offsets,
    const int32_t* counts,
    const int32_t* edges,
    int64_t max_per_group,
    uint8_t* kept) {
  int64_t kept_count = 0;
  for (int32_t r = begin; r < end && kept_count != max_per_group; ++r) {
    bool suppressed = false;
    for (int64_t e = offsets[r]; e < offsets[r] + counts[r] && !suppressed; ++e) {
      suppressed = kept[edges[e]];
    }
    if (!suppressed) {
      kept[r] = 1;
      ++kept_count;
    }
  }
}

template <typename T>
std::vector<uint8_t> keep_by_rank(const RankedGroups<T>& ranked, double iou_threshold, int64_t max_per_group) {
  const int32_t n = static_cast<int32_t>(ranked.order.size());
  const NmsSweep<T> sweep{ranked.x_boxes.data(), ranked.x_groups.data(), ranked.x_ranks.data(), n, iou_threshold};

  // One sweep: each chunk of x positions collects its (suppressed, suppressor) pairs; then they are
  // bucketed by the suppressed box.
  const int64_t num_chunks = (n + kSweepGrain - 1) / kSweepGrain;
  std::vector<std::vector<std::pair<int32_t, int32_t>>> pairs(num_chunks);
  at::parallel_for(0, num_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int32_t last = static_cast<int32_t>(std::min<int64_t>(n, (chunk + 1) * kSweepGrain));
      for (int32_t xp = static_cast<int32_t>(chunk * kSweepGrain); xp < last; ++xp) {
        sweep.visit(xp, [&](int32_t lower, int32_t higher) { pairs[chunk].emplace_back(lower, higher); });
      }
    }
  });
  std::vector<int32_t> counts(n, 0);
  for (const auto& chunk_pairs : pairs) {
    for (const auto& [lower, higher] : chunk_pairs) {
      ++counts[lower];
    }
  }
  std::vector<int64_t> offsets(n + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), offsets.begin() + 1);
  std::vector<int32_t> edges(offsets[n]);
  std::vector<int64_t> cursors(offsets.begin(), offsets.end() - 1);
  for (const auto& chunk_pairs : pairs) {
    for (const auto& [lower, higher] : chunk_pairs) {
      edges[cursors[lower]++] = higher;
    }
  }

  std::vector<uint8_t> kept(n, 0);
  const int64_t num_groups = static_cast<int64_t>(ranked.starts.size()) - 1;
  at::parallel_for(0, num_groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      keep_greedily(
          ranked.starts[g], ranked.starts[g + 1], offsets.data(), counts.data(), edges.data(), max_per_group,
          kept.data());
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
