// Merge of tiled detections on the CPU, fused: one pass over the boxes checks and places them, then each
// image (in parallel) selects its candidates, runs greedy NMS per class (greedy_nms.h) and merges the classes
// by score.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ops/cpu/all_finite.h"
#include "ops/cpu/greedy_nms.h"
#include "ops/merge_tiles.h"
#include "tile_math.h"

namespace tinyfast {
namespace {

// Per image (in parallel), the complete boxes sorted by x1; each truncated box is compared only with the
// complete boxes whose x1 lies in [its x1 - the widest complete box, its x2).
template <typename T>
at::Tensor covered_truncated_typed(const at::Tensor& image_boxes,
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
      std::sort(complete.begin(), complete.end(),
                [&](int64_t a, int64_t b) { return boxes[4 * a] < boxes[4 * b]; });
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

// The per-tile and per-image checks, before any box reads its tile.
template <typename T>
void check_tiles(const MergeTilesInput& in) {
  const int64_t num_tiles = in.tiles.size(0);
  const int64_t num_images = in.image_sizes.size(0);
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
    tiles_valid &=
        std::all_of(tile, tile + 4, [](T v) { return std::isfinite(v); }) && has_positive_extent(tile);
  }
  const int64_t* image_of_tile = tile_image.data_ptr<int64_t>();
  const MergeTilesFacts facts{
      .tile_image_in_range = std::all_of(image_of_tile, image_of_tile + num_tiles,
                                         [&](int64_t i) { return i >= 0 && i < num_images; }),
      .tiles_valid = tiles_valid,
      .tile_scales_valid = finite_positive(scales.data_ptr<T>(), 2 * num_tiles),
      .image_sizes_valid = finite_positive(sizes.data_ptr<T>(), 2 * num_images)};
  check_merge_tiles_facts(facts, num_tiles, num_images);
}

// One pass over the boxes, in parallel: their checks, and each box placed in its image (image-coordinate
// box, whether an internal tile border cut it, its image). The tiles must have passed check_tiles.
template <typename T, typename S>
void place_and_check_boxes(
    const MergeTilesInput& in, const S* scores, T* image_boxes, bool* truncated, int64_t* box_image) {
  const at::Tensor boxes = in.boxes.contiguous();
  const at::Tensor labels = in.labels.contiguous();
  const at::Tensor tile_index = in.tile_index.contiguous();
  const at::Tensor tiles = in.tiles.contiguous();
  const at::Tensor scales = in.tile_scales.contiguous();
  const at::Tensor flips = in.tile_flips.contiguous();
  const at::Tensor tile_image = in.tile_image.contiguous();
  const at::Tensor sizes = in.image_sizes.contiguous();
  const T* box_data = boxes.data_ptr<T>();
  const int64_t* label_of_box = labels.data_ptr<int64_t>();
  const int64_t* tile_of_box = tile_index.data_ptr<int64_t>();
  const T* tile_data = tiles.data_ptr<T>();
  const T* scale_data = scales.data_ptr<T>();
  const bool* flip_data = flips.data_ptr<bool>();
  const int64_t* image_of_tile = tile_image.data_ptr<int64_t>();
  const T* size_data = sizes.data_ptr<T>();
  const int64_t num_tiles = in.tiles.size(0);
  const MergeTilesFacts facts = at::parallel_reduce(
      0, in.boxes.size(0), 4096, MergeTilesFacts{},
      [&](int64_t begin, int64_t end, MergeTilesFacts facts) {
        facts.boxes_finite &= all_finite(box_data + 4 * begin, 4 * (end - begin));
        facts.scores_finite &= all_finite(scores + begin, end - begin);
        int64_t labels_or = 0;  // negative iff a label is; branch-free, for the compiler to vectorize
        for (int64_t i = begin; i < end; ++i) {
          labels_or |= label_of_box[i];
        }
        facts.labels_nonnegative &= labels_or >= 0;
        // Boxes come in runs of one tile (a detector's output, tile after tile): its data is read once a run.
        for (int64_t run = begin, run_end = begin; run < end; run = run_end) {
          const int64_t t = tile_of_box[run];
          run_end = std::find_if(tile_of_box + run, tile_of_box + end, [t](int64_t u) { return u != t; }) -
                    tile_of_box;
          if (t < 0 || t >= num_tiles) {
            facts.tile_index_in_range = false;
            continue;
          }
          const T* tile = tile_data + 4 * t;
          const T scale_x = scale_data[2 * t], scale_y = scale_data[2 * t + 1];
          const bool flipped = flip_data[t];
          const int64_t image = image_of_tile[t];
          const T width = size_data[2 * image], height = size_data[2 * image + 1];
          for (int64_t i = run; i < run_end; ++i) {
            T crop_box[4];
            box_in_crop(box_data + 4 * i, tile, scale_x, scale_y, flipped, crop_box);
            crop_box_in_image(crop_box, tile, width, height, image_boxes + 4 * i);
            truncated[i] = touches_internal_tile_border(crop_box, tile, width, height);
            box_image[i] = image;
          }
        }
        return facts;
      },
      [](MergeTilesFacts a, const MergeTilesFacts& b) {
        a.boxes_finite &= b.boxes_finite;
        a.scores_finite &= b.scores_finite;
        a.labels_nonnegative &= b.labels_nonnegative;
        a.tile_index_in_range &= b.tile_index_in_range;
        return a;
      });
  check_merge_tiles_facts(facts, num_tiles, in.image_sizes.size(0));
}

// Greedy NMS and merge of one image's boxes at a time, with the memory reused from image to image.
template <typename T, typename S>
class ImageMerger {
 public:
  // boxes_of_image: the image's box indices, ascending; candidate: which boxes take part (nullptr: all).
  // Writes the image's kept boxes to `out`, by score descending (ties: lower index first), at most
  // max_per_image of them when >= 0, and returns how many; `kept` is scratch as long as boxes_of_image.
  int64_t run(const int32_t* boxes_of_image,
              int32_t count,
              const bool* candidate,
              const T* boxes,
              const S* scores,
              const int64_t* labels,
              const MergeTilesOptions& options,
              int32_t* kept,
              int64_t* out) {
    candidates_.clear();
    for (int32_t p = 0; p < count; ++p) {
      if (candidate == nullptr || candidate[boxes_of_image[p]]) {
        candidates_.push_back(boxes_of_image[p]);
      }
    }
    const int32_t num_candidates = static_cast<int32_t>(candidates_.size());
    const int32_t* members = candidates_.data();
    if (options.class_agnostic) {
      class_starts_.assign({0, num_candidates});
    } else {
      candidate_labels_.resize(num_candidates);
      for (int32_t p = 0; p < num_candidates; ++p) {
        candidate_labels_[p] = labels[candidates_[p]];
      }
      bucket_by_group(candidate_labels_.data(), num_candidates, by_class_, class_starts_);
      for (int32_t& member : by_class_) {
        member = candidates_[member];
      }
      members = by_class_.data();
    }
    const int64_t num_classes = static_cast<int64_t>(class_starts_.size()) - 1;
    kept_spans_.resize(num_classes);
    for (int64_t c = 0; c < num_classes; ++c) {
      const int32_t first = class_starts_[c];
      const int32_t kept_count =
          nms_.run(boxes, scores, members + first, class_starts_[c + 1] - first, options.iou_threshold,
                   options.class_agnostic ? options.cap() : -1, kept + first);
      kept_spans_[c] = {first, first + kept_count};
    }
    return merge_by_score(kept, kept_spans_.data(), num_classes, scores, options.cap(), out);
  }

 private:
  GreedyNms<T, S> nms_;
  std::vector<int32_t> candidates_, by_class_, class_starts_;
  std::vector<int64_t> candidate_labels_;
  std::vector<Span> kept_spans_;
};

// T: box coordinates; S: scores as ranked (float or double, exact for any score dtype).
template <typename T, typename S>
MergedDetections merge_tiles_typed(const MergeTilesInput& in, const MergeTilesOptions& options) {
  const int64_t n = in.boxes.size(0);
  constexpr at::ScalarType kScoreType = c10::CppTypeToScalarType<S>::value;
  at::Tensor ranked_scores = in.scores.to(kScoreType).contiguous();
  check_tiles<T>(in);
  at::Tensor image_boxes = at::empty({n, 4}, in.boxes.options());
  at::Tensor truncated = at::empty({n}, in.boxes.options().dtype(at::kBool));
  at::Tensor box_image = at::empty({n}, in.tile_image.options());
  place_and_check_boxes(in, ranked_scores.data_ptr<S>(), image_boxes.data_ptr<T>(),
                        truncated.data_ptr<bool>(), box_image.data_ptr<int64_t>());

  at::Tensor scores = in.scores;
  at::Tensor candidate;  // undefined: every box is a candidate
  if (options.score_threshold != -INFINITY) {
    candidate = in.scores.gt(options.score_threshold);  // compared in the scores' dtype, as in PyTorch
  }
  if (options.truncated != TruncatedMode::kKeep) {
    const at::Tensor covered =
        covered_truncated_typed<T>(image_boxes, truncated, in.tile_index, box_image, in.labels,
                                   options.class_agnostic, options.truncated_iof);
    if (options.truncated == TruncatedMode::kDrop) {
      candidate = candidate.defined() ? candidate & covered.logical_not() : covered.logical_not();
    } else {
      scores = at::where(covered, scores * options.truncated_factor, scores);
      ranked_scores = scores.to(kScoreType).contiguous();
    }
  }
  if (candidate.defined()) {
    candidate = candidate.contiguous();
  }

  std::vector<int32_t> by_image, image_starts;
  bucket_by_group(box_image.data_ptr<int64_t>(), static_cast<int32_t>(n), by_image, image_starts);
  const int64_t num_images = static_cast<int64_t>(image_starts.size()) - 1;
  std::vector<int32_t> kept(n);
  std::vector<int64_t> image_keep(n);  // each image's result at the start of its span of by_image
  std::vector<int64_t> image_keep_size(num_images);
  const T* box_data = image_boxes.data_ptr<T>();
  const S* score_data = ranked_scores.data_ptr<S>();
  const bool* candidate_data = candidate.defined() ? candidate.data_ptr<bool>() : nullptr;
  const at::Tensor labels = in.labels.contiguous();
  at::parallel_for(0, num_images, 1, [&](int64_t begin, int64_t end) {
    ImageMerger<T, S> merger;
    for (int64_t k = begin; k < end; ++k) {
      const int32_t first = image_starts[k];
      image_keep_size[k] = merger.run(by_image.data() + first, image_starts[k + 1] - first, candidate_data,
                                      box_data, score_data, labels.data_ptr<int64_t>(), options,
                                      kept.data() + first, image_keep.data() + first);
    }
  });

  const int64_t total = std::accumulate(image_keep_size.begin(), image_keep_size.end(), int64_t{0});
  at::Tensor keep = at::empty({total}, at::kLong);
  at::Tensor keep_image = at::empty({total}, at::kLong);
  int64_t* keep_data = keep.data_ptr<int64_t>();
  int64_t* keep_image_data = keep_image.data_ptr<int64_t>();
  const int64_t* image_of_box = box_image.data_ptr<int64_t>();
  for (int64_t k = 0, written = 0; k < num_images; ++k) {
    std::copy_n(image_keep.data() + image_starts[k], image_keep_size[k], keep_data + written);
    std::fill_n(keep_image_data + written, image_keep_size[k], image_of_box[by_image[image_starts[k]]]);
    written += image_keep_size[k];
  }
  return {image_boxes.index_select(0, keep), scores.index_select(0, keep), in.labels.index_select(0, keep),
          keep_image};
}

MergedDetections merge_cpu(const MergeTilesInput& in, const MergeTilesOptions& options) {
  const bool double_scores = in.scores.scalar_type() == at::kDouble;
  if (in.boxes.scalar_type() == at::kDouble) {
    return double_scores ? merge_tiles_typed<double, double>(in, options)
                         : merge_tiles_typed<double, float>(in, options);
  }
  return double_scores ? merge_tiles_typed<float, double>(in, options)
                       : merge_tiles_typed<float, float>(in, options);
}

constexpr MergeTilesBackend kCpuBackend{&merge_cpu};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("merge_tiles", &merge_tiles_kernel<kCpuBackend>);
}

}  // namespace tinyfast
