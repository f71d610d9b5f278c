// Greedy NMS on the CPU, the parts shared by batched_nms and merge_tiles: boxes bucketed by group, each
// group ranked by score and walked greedily (a box is compared only with the kept boxes of the grid cells it
// covers), and the kept lists of several groups merged by score.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include "box_math.h"
#include "ops/cpu/kept_box_grid.h"
#include "ops/cpu/score_order.h"

namespace tinyfast {

// Positions [begin, end) of one list in a larger array.
struct Span {
  int32_t begin, end;
};

// Positions 0..n-1 grouped by ids[position] (groups ascending, positions ascending within a group) in
// `bucketed`, and the first bucketed position of every group plus n at the end in `starts`.
inline void bucket_by_group(const int64_t* ids,
                            int32_t n,
                            std::vector<int32_t>& bucketed,
                            std::vector<int32_t>& starts) {
  bucketed.resize(n);
  starts.clear();
  if (std::is_sorted(ids, ids + n)) {  // grouped already (boxes image after image): nothing moves
    std::iota(bucketed.begin(), bucketed.end(), 0);
    for (int32_t p = 0; p < n; p = static_cast<int32_t>(std::upper_bound(ids + p, ids + n, ids[p]) - ids)) {
      starts.push_back(p);
    }
    starts.push_back(n);
    return;
  }
  const auto [lowest, highest] = std::minmax_element(ids, ids + n);
  const uint64_t span = static_cast<uint64_t>(*highest) - static_cast<uint64_t>(*lowest);
  if (span < 4 * static_cast<uint64_t>(n) + 1024) {  // dense ids (images, classes): counting sort
    std::vector<int32_t> next(span + 2, 0);
    for (int32_t i = 0; i < n; ++i) {
      ++next[ids[i] - *lowest + 1];
    }
    std::partial_sum(next.begin(), next.end(), next.begin());
    for (int32_t i = 0; i < n; ++i) {
      bucketed[next[ids[i] - *lowest]++] = i;
    }
  } else {
    std::iota(bucketed.begin(), bucketed.end(), 0);
    std::stable_sort(bucketed.begin(), bucketed.end(), [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
  }
  for (int32_t p = 0; p < n; ++p) {
    if (p == 0 || ids[bucketed[p]] != ids[bucketed[p - 1]]) {
      starts.push_back(p);
    }
  }
  starts.push_back(n);
}

// Greedy NMS of one group at a time, with the memory of one group reused for the next (one per thread).
// T: box coordinates; S: scores (float or double, both ordered exactly like any narrower float type).
template <typename T, typename S>
class GreedyNms {
 public:
  // members: the group's box indices, ascending. Writes the kept box indices to `kept` by score descending
  // (ties: lower index first), at most `cap` of them when cap >= 0; returns how many. A box is kept iff no
  // kept box has IoU > threshold with it; boxes without positive extent are always kept.
  int32_t run(const T* boxes,
              const S* scores,
              const int32_t* members,
              int32_t count,
              double iou_threshold,
              int64_t cap,
              int32_t* kept) {
    ranked_.resize(count);
    for (int32_t k = 0; k < count; ++k) {
      ranked_[k] = {descending_key(scores[members[k]]), members[k]};
    }
    radix_sort(ranked_, scratch_);
    boxes_by_rank_.resize(4 * static_cast<size_t>(count));
    for (int32_t r = 0; r < count; ++r) {
      std::copy_n(boxes + 4 * static_cast<int64_t>(ranked_[r].index), 4,
                  boxes_by_rank_.data() + 4 * static_cast<size_t>(r));
    }
    const int32_t kept_count = grid_.keep_greedily(boxes_by_rank_.data(), count, iou_threshold, cap, kept);
    for (int32_t k = 0; k < kept_count; ++k) {
      kept[k] = ranked_[kept[k]].index;
    }
    return kept_count;
  }

 private:
  using Key = std::conditional_t<std::is_same_v<S, double>, uint64_t, uint32_t>;
  std::vector<KeyedIndex<Key>> ranked_, scratch_;
  std::vector<T> boxes_by_rank_;
  KeptBoxGrid<T> grid_;
};

// Lists of box indices (spans of `lists`), each by score descending with ties by lower index, merged into
// one such list in `out`, cut after `cap` entries when cap >= 0; returns its length.
template <typename S>
int64_t merge_by_score(
    const int32_t* lists, const Span* spans, int64_t num_spans, const S* scores, int64_t cap, int64_t* out) {
  // Each list's head (score at hand) and rest, in a binary heap with the first head on top.
  struct Head {
    S score;
    int32_t index;
    Span rest;
  };
  const auto after = [](const Head& a, const Head& b) {
    return a.score < b.score || (a.score == b.score && a.index > b.index);
  };
  std::vector<Head> heap;
  for (int64_t k = 0; k < num_spans; ++k) {
    if (spans[k].begin < spans[k].end) {
      const int32_t index = lists[spans[k].begin];
      heap.push_back({scores[index], index, {spans[k].begin + 1, spans[k].end}});
    }
  }
  std::make_heap(heap.begin(), heap.end(), after);
  const int64_t limit = cap < 0 ? std::numeric_limits<int64_t>::max() : cap;
  int64_t length = 0;
  while (!heap.empty() && length < limit) {
    Head& top = heap.front();
    out[length++] = top.index;
    if (heap.size() == 1) {  // the last list: copied as it is
      const int64_t taken = std::min<int64_t>(top.rest.end - top.rest.begin, limit - length);
      std::copy_n(lists + top.rest.begin, taken, out + length);
      return length + taken;
    }
    if (top.rest.begin < top.rest.end) {
      top.index = lists[top.rest.begin++];
      top.score = scores[top.index];
    } else {
      top = heap.back();
      heap.pop_back();
    }
    for (size_t parent = 0, child = 1; child < heap.size();
         parent = child, child = 2 * child + 1) {  // sift down
      child += child + 1 < heap.size() && after(heap[child], heap[child + 1]);
      if (!after(heap[parent], heap[child])) {
        break;
      }
      std::swap(heap[parent], heap[child]);
    }
  }
  return length;
}

// Greedy NMS of every group of `members` (group g is members[starts[g], starts[g + 1])), the groups in
// parallel, each chunk of groups with its own `Nms` (reusable scratch); `keep(nms, members, count, kept)`
// writes the kept members of one group by score to `kept` and returns their number. The kept indices of all
// groups merged by score (descending, ties by lower index) into one int64 tensor.
template <typename Nms, typename S, typename Keep>
at::Tensor keep_each_group(const std::vector<int32_t>& members,
                           const std::vector<int32_t>& starts,
                           const S* scores,
                           Keep keep) {
  const int64_t num_groups = static_cast<int64_t>(starts.size()) - 1;
  std::vector<int32_t> kept(members.size());  // each group's kept indices at the start of its span
  std::vector<Span> kept_spans(num_groups);
  at::parallel_for(0, num_groups, 1, [&](int64_t begin, int64_t end) {
    Nms nms;
    for (int64_t g = begin; g < end; ++g) {
      const int32_t first = starts[g];
      const int32_t count = keep(nms, members.data() + first, starts[g + 1] - first, kept.data() + first);
      kept_spans[g] = {first, first + count};
    }
  });
  int64_t total = 0;
  for (const Span& span : kept_spans) {
    total += span.end - span.begin;
  }
  at::Tensor out = at::empty({total}, at::kLong);
  merge_by_score(kept.data(), kept_spans.data(), num_groups, scores, -1, out.data_ptr<int64_t>());
  return out;
}

}  // namespace tinyfast
