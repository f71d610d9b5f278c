// The merge of tiled detections: the argument checks shared by the CPU and CUDA implementations, and the
// device-generic steps (tensor operations around two per-box kernels) that the CUDA one runs; the CPU one
// fuses them per image (cpu/merge_tiles_kernel.cpp).
#pragma once

#include <ATen/ATen.h>

#include <string>
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

struct MergeTilesOptions {
  double score_threshold;
  double iou_threshold;
  bool class_agnostic;
  int64_t max_per_image;
  std::string truncated;  // "keep", "downweight" or "drop"
  double truncated_iof;
  double truncated_factor;
};

// Checks of shapes, dtypes, devices and options: ValueError naming the argument.
void check_merge_tiles_args(const MergeTilesInput& input, const MergeTilesOptions& options);

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

// The result of a merge without boxes.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> empty_merge_result(const MergeTilesInput& input);

// What each backend of merge_tiles_with implements. All tensors on the input's device, boxes in compute type T of `boxes`.
struct MergeTilesKernels {
  // Image-coordinate boxes [N, 4] (unflipped, unscaled, shifted, clipped) and "cut by an internal tile
  // border" flags [N] bool.
  void (*place_boxes)(const MergeTilesInput& input, at::Tensor& image_boxes, at::Tensor& truncated);
  // [N] bool: the truncated box lies mostly inside (intersection over its area >= iof) a box from another
  // tile of the same image (and label, unless class_agnostic) that is not truncated.
  at::Tensor (*covered_truncated)(
      const at::Tensor& image_boxes,
      const at::Tensor& truncated,
      const at::Tensor& box_tile,
      const at::Tensor& box_image,
      const at::Tensor& labels,
      bool class_agnostic,
      double iof);
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> merge_tiles_with(
    const MergeTilesInput& input,
    const MergeTilesOptions& options,
    const MergeTilesKernels& kernels);

}  // namespace tinyfast
