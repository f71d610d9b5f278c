// The merge of tiled detections: the op's arguments, checks and entry point, shared by the CPU backend (fused
// per image, cpu/merge_tiles_kernel.cpp) and the CUDA one (tensor operations around two per-box kernels,
// cuda/merge_tiles_cuda.cpp).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace tinyfast {

struct MergeTilesInput {
  const at::Tensor& boxes;        // [N, 4] in the coordinates of each box's tile as the detector saw it
  const at::Tensor& scores;       // [N]
  const at::Tensor& labels;       // [N] int64 >= 0
  const at::Tensor& tile_index;   // [N] int64 in [0, T)
  const at::Tensor& tiles;        // [T, 4] crop of each tile in its image (x1, y1, x2, y2)
  const at::Tensor& tile_scales;  // [T, 2] (x, y) resize factor from crop to detector input
  const at::Tensor& tile_flips;   // [T] bool: the detector saw the crop flipped horizontally
  const at::Tensor& tile_image;   // [T] int64 in [0, I)
  const at::Tensor& image_sizes;  // [I, 2] (width, height)
};

// What happens to a truncated box lying mostly inside a complete box of another tile.
enum class TruncatedMode { kKeep, kDownweight, kDrop };

// "keep", "downweight" or "drop"; else ValueError naming the argument.
TruncatedMode parse_truncated(c10::string_view truncated);

struct MergeTilesOptions {
  double score_threshold;  // -inf: none
  double iou_threshold;
  bool class_agnostic;
  std::optional<int64_t> max_per_image;  // none: no cap
  TruncatedMode truncated;
  double truncated_iof;
  double truncated_factor;

  // The cap of the kernels: -1 for none.
  int64_t cap() const {
    return max_per_image.value_or(-1);
  }
};

// What the checks that read the data found (each true unless a check found otherwise).
struct MergeTilesFacts {
  bool boxes_finite = true;
  bool scores_finite = true;
  bool labels_nonnegative = true;
  bool tile_index_in_range = true;
  bool tile_image_in_range = true;
  bool tiles_valid = true;        // finite, x2 > x1 and y2 > y1
  bool tile_scales_valid = true;  // finite and > 0
  bool image_sizes_valid = true;  // finite and > 0
};

// ValueError naming the first bad argument.
void check_merge_tiles_facts(const MergeTilesFacts& facts, int64_t num_tiles, int64_t num_images);

using MergedDetections = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct MergeTilesBackend {
  // The merge of checked input with at least one box (with the device guard it needs); the checks that
  // read the data are the backend's (check_merge_tiles_facts).
  MergedDetections (*merge)(const MergeTilesInput& input, const MergeTilesOptions& options);
};

// Checks of shapes, dtypes, devices and options (ValueError naming the argument), the empty case, then the
// backend.
MergedDetections merge_tiles_with(const MergeTilesInput& input,
                                  const MergeTilesOptions& options,
                                  const MergeTilesBackend& backend);

// A backend's kernel with the op's schema.
template <const MergeTilesBackend& backend>
MergedDetections merge_tiles_kernel(const at::Tensor& boxes,
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
                                    std::optional<int64_t> max_per_image,
                                    c10::string_view truncated,
                                    double truncated_iof,
                                    double truncated_factor) {
  return merge_tiles_with(
      {boxes, scores, labels, tile_index, tiles, tile_scales, tile_flips, tile_image, image_sizes},
      {score_threshold, iou_threshold, class_agnostic, max_per_image, parse_truncated(truncated),
       truncated_iof, truncated_factor},
      backend);
}

}  // namespace tinyfast
