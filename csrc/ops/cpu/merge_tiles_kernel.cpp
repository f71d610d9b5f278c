// Merge of tiled detections on the CPU: placement, truncated boxes and, per image, greedy NMS (greedy_nms.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "ops/cpu/greedy_nms.h"
#include "ops/merge_tiles.h"
#include "tile_math.h"

namespace tinyfast {
namespace {

template <typename T>
void place_boxes_typed(const MergeTilesInput& in, at::Tensor& image_boxes, at::Tensor& truncated) {
  const at::Tensor boxes = in.boxes.contiguous();
  const at::Tensor tiles = in.tiles.contiguous();
  const at::Tensor scales = in.tile_scales.contiguous();
  const at::Tensor flips = in.tile_flips.contiguous();
  const at::Tensor tile_image = in.tile_image.contiguous();
  const at::Tensor sizes = in.image_sizes.contiguous();
  const at::Tensor tile_index = in.tile_index.contiguous();
  const T* box_data = boxes.data_ptr<T>();
  const T* tile_data = tiles.data_ptr<T>();
  const T* scale_data = scales.data_ptr<T>();
  const bool* flip_data = flips.data_ptr<bool>();
  const int64_t* image_of_tile = tile_image.data_ptr<int64_t>();
  const T* size_data = sizes.data_ptr<T>();
  const int64_t* tile_of_box = tile_index.data_ptr<int64_t>();
  T* out = image_boxes.data_ptr<T>();
  bool* cut = truncated.data_ptr<bool>();
  at::parallel_for(0, boxes.size(0), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = tile_of_box[i];
      const T* tile = tile_data + 4 * t;
      const T* size = size_data + 2 * image_of_tile[t];
      T crop_box[4];
      box_in_crop(box_data + 4 * i, tile, scale_data[2 * t], scale_data[2 * t + 1], flip_data[t], crop_box);
      crop_box_in_image(crop_box, tile, size[0], size[1], out + 4 * i);
      cut[i] = touches_internal_tile_border(crop_box, tile, size[0], size[1]);
    }
  });
}

// Per image (in parallel), the complete boxes sorted by x1; each truncated box is compared only with the
// complete boxes whose x1 lies in [its x1 - the widest complete box, its x2).
template <typename T>
at::Tensor covered_truncated_typed(
    const at::Tensor& image_boxes,
    const at::Tensor& truncated,
    const at::Tensor& box_tile,
    const at::Tensor& box_image,
    const at::Tensor& labels,
    bool class_agnostic,
    double iof) {
  const int64_t n = image_boxes.size(0);
  const T* boxes = image_boxes.data_ptr<T>();
  const bool* cut = truncated.data_ptr<bool>();
  const at::Tensor tile_c = box_tile.contiguous();
  const at::Tensor image_c = box_image.contiguous();
  const at::Tensor labels_c = labels.contiguous();
  const int64_t* tile = tile_c.data_ptr<int64_t>();
  const int64_t* label = labels_c.data_ptr<int64_t>();
  const at::Tensor by_image = std::get<1>(image_c.sort(/*stable=*/true, 0, false));
  const int64_t* order = by_image.data_ptr<int64_t>();
  const int64_t* image = image_c.data_ptr<int64_t>();
  std::vector<int64_t> starts;
  for (int64_t p = 0; p < n; ++p) {
    if (p == 0 || image[order[p]] != image[order[p - 1]]) {
      starts.push_back(p);
    }
  }
  starts.push_back(n);

  at::Tensor covered = at::zeros({n}, truncated.options());
  bool* out = covered.data_ptr<bool>();
  at::parallel_for(0, static_cast<int64_t>(starts.size()) - 1, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> complete;
    for (int64_t g = begin; g < end; ++g) {
      complete.clear();
      T widest = 0;
      for (int64_t p = starts[g]; p < starts[g + 1]; ++p) {
        const T* b = boxes + 4 * order[p];
        if (!cut[order[p]] && has_positive_extent(b)) {
          complete.push_back(order[p]);
          widest = std::max(widest, b[2] - b[0]);
        }
      }
      std::sort(complete.begin(), complete.end(), [&](int64_t a, int64_t b) { return boxes[4 * a] < boxes[4 * b]; });
      for (int64_t p = starts[g]; p < starts[g + 1]; ++p) {
        const int64_t i = order[p];
        const T* part = boxes + 4 * i;
        if (!cut[i] || !has_positive_extent(part)) {
          continue;
        }
        auto c = std::lower_bound(complete.begin(), complete.end(), part[0] - widest,
                                  [&](int64_t j, T x) { return boxes[4 * j] < x; });
        for (; c != complete.end() && boxes[4 * *c] < part[2]; ++c) {
          if (tile[*c] != tile[i] && (class_agnostic || label[*c] == label[i]) &&
              mostly_inside(part, boxes + 4 * *c, iof)) {
            out[i] = true;
            break;
          }
        }
      }
    }
  });
  return covered;
}

// The checks that read the data, in one pass over the boxes and one over the tiles; `num_classes` gets
// 1 + the largest label.
template <typename T, typename S>
MergeTilesFacts read_facts(const MergeTilesInput& in, const T* boxes, const S* scores, const int64_t* labels,
                           const int64_t* tile_index, int64_t& num_classes) {
  struct BoxFacts {
    bool boxes_finite = true, scores_finite = true, tile_index_in_range = true;
    int64_t min_label = std::numeric_limits<int64_t>::max(), max_label = std::numeric_limits<int64_t>::min();
  };
  const int64_t num_tiles = in.tiles.size(0);
  const BoxFacts box_facts = at::parallel_reduce(
      0, in.boxes.size(0), 1 << 14, BoxFacts{},
      [&](int64_t begin, int64_t end, BoxFacts facts) {
        for (int64_t i = begin; i < end; ++i) {
          const T* b = boxes + 4 * i;
          facts.boxes_finite &= std::isfinite(b[0]) & std::isfinite(b[1]) & std::isfinite(b[2]) & std::isfinite(b[3]);
          facts.scores_finite &= std::isfinite(scores[i]);
          facts.tile_index_in_range &= (tile_index[i] >= 0) & (tile_index[i] < num_tiles);
          facts.min_label = std::min(facts.min_label, labels[i]);
          facts.max_label = std::max(facts.max_label, labels[i]);
        }
        return facts;
      },
      [](const BoxFacts& a, const BoxFacts& b) {
        return BoxFacts{a.boxes_finite && b.boxes_finite, a.scores_finite && b.scores_finite,
                        a.tile_index_in_range && b.tile_index_in_range, std::min(a.min_label, b.min_label),
                        std::max(a.max_label, b.max_label)};
      });
  num_classes = box_facts.max_label + 1;

  const at::Tensor tiles = in.tiles.contiguous();
  const at::Tensor scales = in.tile_scales.contiguous();
  const at::Tensor tile_image = in.tile_image.contiguous();
  const at::Tensor sizes = in.image_sizes.contiguous();
  const auto finite_positive = [](const T* values, int64_t count) {
    return std::all_of(values, values + count, [](T v) { return std::isfinite(v) && v > 0; });
  };
  bool tiles_valid = true;
  for (int64_t t = 0; t < num_tiles; ++t) {
    const T* tile = tiles.data_ptr<T>() + 4 * t;
    tiles_valid &= std::all_of(tile, tile + 4, [](T v) { return std::isfinite(v); }) && has_positive_extent(tile);
  }
  const int64_t* image_of_tile = tile_image.data_ptr<int64_t>();
  const int64_t num_images = in.image_sizes.size(0);
  return {box_facts.boxes_finite,
          box_facts.scores_finite,
          box_facts.min_label >= 0,
          box_facts.tile_index_in_range,
          std::all_of(image_of_tile, image_of_tile + num_tiles, [&](int64_t i) { return i >= 0 && i < num_images; }),
          tiles_valid,
          finite_positive(scales.data_ptr<T>(), 2 * num_tiles),
          finite_positive(sizes.data_ptr<T>(), 2 * num_images)};
}

// The merge on the CPU, fused per image: the boxes placed in their images, the candidates bucketed by
// (image, class), then per image in parallel each class's greedy NMS and the merge of the classes by score.
// T: box coordinates; S: scores as ranked (float or double, exact for any score dtype).
template <typename T, typename S>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> merge_tiles_typed(
    const MergeTilesInput& in,
    const MergeTilesOptions& options) {
  const int64_t n = in.boxes.size(0);
  const at::Tensor boxes = in.boxes.contiguous();
  const at::Tensor labels = in.labels.contiguous();
  const at::Tensor tile_index = in.tile_index.contiguous();
  const at::Tensor tile_image = in.tile_image.contiguous();
  const int64_t* label_of_box = labels.data_ptr<int64_t>();
  const int64_t* tile_of_box = tile_index.data_ptr<int64_t>();
  const int64_t* image_of_tile = tile_image.data_ptr<int64_t>();
  constexpr at::ScalarType kScoreType = c10::CppTypeToScalarType<S>::value;
  at::Tensor ranked_scores = in.scores.to(kScoreType).contiguous();
  int64_t num_classes = 0;
  check_merge_tiles_facts(
      read_facts(in, boxes.data_ptr<T>(), ranked_scores.data_ptr<S>(), label_of_box, tile_of_box,
                 num_classes),
      in.tiles.size(0), in.image_sizes.size(0));

  at::Tensor image_boxes = at::empty({n, 4}, in.boxes.options());
  at::Tensor truncated = at::empty({n}, in.boxes.options().dtype(at::kBool));
  place_boxes_typed<T>(in, image_boxes, truncated);
  at::Tensor scores = in.scores;
  at::Tensor candidate = in.scores.gt(options.score_threshold);  // compared in the scores' dtype, as in PyTorch
  if (options.truncated != "keep") {
    const at::Tensor covered = covered_truncated_typed<T>(
        image_boxes, truncated, in.tile_index, in.tile_image.index_select(0, in.tile_index), in.labels,
        options.class_agnostic, options.truncated_iof);
    if (options.truncated == "drop") {
      candidate &= covered.logical_not();
    } else {
      scores = at::where(covered, scores * options.truncated_factor, scores);
      ranked_scores = scores.to(kScoreType).contiguous();
    }
  }
  candidate = candidate.contiguous();

  // Candidates bucketed by group: image * num_classes + class, or image when class-agnostic.
  const int64_t classes = options.class_agnostic ? 1 : num_classes;
  const bool* is_candidate = candidate.data_ptr<bool>();
  std::vector<int32_t> candidates;
  std::vector<int64_t> candidate_group;
  candidates.reserve(n);
  candidate_group.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    if (is_candidate[i]) {
      candidates.push_back(static_cast<int32_t>(i));
      candidate_group.push_back(image_of_tile[tile_of_box[i]] * classes + (options.class_agnostic ? 0 : label_of_box[i]));
    }
  }
  const int32_t num_candidates = static_cast<int32_t>(candidates.size());
  std::vector<int32_t> members, starts;
  bucket_by_group(candidate_group.data(), num_candidates, members, starts);
  const int64_t num_groups = static_cast<int64_t>(starts.size()) - 1;
  // The groups of each image with candidates: [image_groups[k], image_groups[k + 1]).
  std::vector<int64_t> images, image_groups;
  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t image = candidate_group[members[starts[g]]] / classes;
    if (images.empty() || images.back() != image) {
      images.push_back(image);
      image_groups.push_back(g);
    }
  }
  image_groups.push_back(num_groups);
  for (int32_t& member : members) {
    member = candidates[member];
  }

  const T* box_data = image_boxes.data_ptr<T>();
  const S* score_data = ranked_scores.data_ptr<S>();
  const int64_t num_images = static_cast<int64_t>(images.size());
  std::vector<int32_t> kept(num_candidates);         // each group's kept boxes at the start of its members
  std::vector<Span> kept_spans(num_groups);
  std::vector<int64_t> image_keep(num_candidates);   // each image's result at the start of its first group
  std::vector<int64_t> image_keep_size(num_images);
  at::parallel_for(0, num_images, 1, [&](int64_t begin, int64_t end) {
    GreedyNms<T, S> nms;
    for (int64_t k = begin; k < end; ++k) {
      for (int64_t g = image_groups[k]; g < image_groups[k + 1]; ++g) {
        const int32_t first = starts[g];
        const int32_t count = nms.run(box_data, score_data, members.data() + first, starts[g + 1] - first,
                                      options.iou_threshold, options.class_agnostic ? options.max_per_image : -1,
                                      kept.data() + first);
        kept_spans[g] = {first, first + count};
      }
      const int64_t first_group = image_groups[k];
      image_keep_size[k] = merge_by_score(kept.data(), kept_spans.data() + first_group, image_groups[k + 1] - first_group,
                                          score_data, options.max_per_image, image_keep.data() + starts[first_group]);
    }
  });

  const int64_t total = std::accumulate(image_keep_size.begin(), image_keep_size.end(), int64_t{0});
  at::Tensor keep = at::empty({total}, at::kLong);
  at::Tensor keep_image = at::empty({total}, at::kLong);
  int64_t* keep_data = keep.data_ptr<int64_t>();
  int64_t* keep_image_data = keep_image.data_ptr<int64_t>();
  for (int64_t k = 0, written = 0; k < num_images; ++k) {
    std::copy_n(image_keep.data() + starts[image_groups[k]], image_keep_size[k], keep_data + written);
    std::fill_n(keep_image_data + written, image_keep_size[k], images[k]);
    written += image_keep_size[k];
  }
  return {image_boxes.index_select(0, keep), scores.index_select(0, keep), in.labels.index_select(0, keep), keep_image};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> merge_tiles_cpu(
    const at::Tensor& boxes,
    const at::Tensor& scores,
    const at::Tensor& labels,
    const at::Tensor& tile_index,
    const at::Tensor& tiles,
    const at::Tensor& tile_scales,
    const at::Tensor& tile_flips,
    const at::Tensor& tile_image,
    const at::Tensor& image_sizes,
    double score_threshold,
    double iou_threshold,
    bool class_agnostic,
    int64_t max_per_image,
    c10::string_view truncated,
    double truncated_iof,
    double truncated_factor) {
  const MergeTilesInput in{boxes, scores, labels, tile_index, tiles, tile_scales, tile_flips, tile_image, image_sizes};
  const MergeTilesOptions options{score_threshold, iou_threshold, class_agnostic, max_per_image, std::string(truncated),
                                  truncated_iof, truncated_factor};
  check_merge_tiles_args(in, options);
  if (boxes.size(0) == 0) {
    return empty_merge_result(in);
  }
  const bool double_scores = scores.scalar_type() == at::kDouble;
  if (boxes.scalar_type() == at::kDouble) {
    return double_scores ? merge_tiles_typed<double, double>(in, options) : merge_tiles_typed<double, float>(in, options);
  }
  return double_scores ? merge_tiles_typed<float, double>(in, options) : merge_tiles_typed<float, float>(in, options);
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("merge_tiles", &merge_tiles_cpu);
}

}  // namespace tinyfast
