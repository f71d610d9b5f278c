#include "ops/merge_tiles.h"

#include <torch/library.h>

#include <cmath>
#include <limits>

namespace tinyfast {
namespace {

void check_tensor(const at::Tensor& t, const char* name, int64_t dim, int64_t rows, int64_t cols = -1) {
  const bool shape_ok = t.dim() == dim && t.size(0) == rows && (cols < 0 || t.size(1) == cols);
  if (cols < 0) {
    TORCH_CHECK_VALUE(shape_ok, "merge_tiles: ", name, " must have shape [", rows, "], got ", t.sizes());
  } else {
    TORCH_CHECK_VALUE(shape_ok, "merge_tiles: ", name, " must have shape [", rows, ", ", cols, "], got ",
                      t.sizes());
  }
}

void check_args(const MergeTilesInput& in, const MergeTilesOptions& options) {
  TORCH_CHECK_VALUE(in.boxes.dim() == 2 && in.boxes.size(1) == 4,
                    "merge_tiles: boxes must have shape [N, 4], got ", in.boxes.sizes());
  const int64_t n = in.boxes.size(0);
  TORCH_CHECK_VALUE(in.boxes.scalar_type() == at::kFloat || in.boxes.scalar_type() == at::kDouble,
                    "merge_tiles: boxes must be float32 or float64, got ", in.boxes.scalar_type());
  const int64_t num_tiles = in.tiles.dim() == 2 ? in.tiles.size(0) : -1;
  const int64_t num_images = in.image_sizes.dim() == 2 ? in.image_sizes.size(0) : -1;
  check_tensor(in.scores, "scores", 1, n);
  check_tensor(in.labels, "labels", 1, n);
  check_tensor(in.tile_index, "tile_index", 1, n);
  check_tensor(in.tiles, "tiles", 2, num_tiles, 4);
  check_tensor(in.tile_scales, "tile_scales", 2, num_tiles, 2);
  check_tensor(in.tile_flips, "tile_flips", 1, num_tiles);
  check_tensor(in.tile_image, "tile_image", 1, num_tiles);
  check_tensor(in.image_sizes, "image_sizes", 2, num_images, 2);
  TORCH_CHECK_VALUE(in.scores.is_floating_point(), "merge_tiles: scores must be a floating tensor, got ",
                    in.scores.scalar_type());
  TORCH_CHECK_VALUE(in.labels.scalar_type() == at::kLong,
                    "merge_tiles: labels must be an integer tensor of dtype int64, got ",
                    in.labels.scalar_type());
  TORCH_CHECK_VALUE(in.tile_index.scalar_type() == at::kLong,
                    "merge_tiles: tile_index must be an integer tensor of dtype int64, got ",
                    in.tile_index.scalar_type());
  TORCH_CHECK_VALUE(in.tiles.scalar_type() == in.boxes.scalar_type() &&
                        in.tile_scales.scalar_type() == in.boxes.scalar_type() &&
                        in.image_sizes.scalar_type() == in.boxes.scalar_type(),
                    "merge_tiles: tiles, tile_scales and image_sizes must have the dtype of boxes (",
                    in.boxes.scalar_type(), ")");
  TORCH_CHECK_VALUE(in.tile_flips.scalar_type() == at::kBool,
                    "merge_tiles: tile_flips must be a bool tensor, got ", in.tile_flips.scalar_type());
  TORCH_CHECK_VALUE(in.tile_image.scalar_type() == at::kLong,
                    "merge_tiles: tile_image must be an integer tensor of dtype int64, got ",
                    in.tile_image.scalar_type());
  for (const at::Tensor* t : {&in.scores, &in.labels, &in.tile_index, &in.tiles, &in.tile_scales,
                              &in.tile_flips, &in.tile_image, &in.image_sizes}) {
    TORCH_CHECK_VALUE(t->device() == in.boxes.device(),
                      "merge_tiles: all tensors must be on the device of boxes (", in.boxes.device(),
                      "), found one on ", t->device());
  }
  TORCH_CHECK_VALUE(!std::isnan(options.score_threshold), "merge_tiles: score_threshold must not be NaN");
  TORCH_CHECK_VALUE(!std::isnan(options.iou_threshold) && options.iou_threshold >= 0,
                    "merge_tiles: iou_threshold must be a number >= 0, got ", options.iou_threshold);
  TORCH_CHECK_VALUE(options.max_per_image.value_or(0) >= 0,
                    "merge_tiles: max_per_image must be None or an int >= 0, got ",
                    options.max_per_image.value_or(0));
  TORCH_CHECK_VALUE(options.truncated_iof > 0 && options.truncated_iof <= 1,
                    "merge_tiles: truncated_iof must be in (0, 1], got ", options.truncated_iof);
  TORCH_CHECK_VALUE(options.truncated_factor >= 0 && options.truncated_factor <= 1,
                    "merge_tiles: truncated_factor must be in [0, 1], got ", options.truncated_factor);
  TORCH_CHECK_VALUE(n < std::numeric_limits<int32_t>::max(),
                    "merge_tiles: boxes has more than 2^31 - 1 rows");
  TORCH_CHECK_VALUE(n == 0 || (num_tiles > 0 && num_images > 0),
                    "merge_tiles: boxes need at least one tile and one image, got ", num_tiles, " tiles and ",
                    num_images, " images");
}

}  // namespace

TruncatedMode parse_truncated(c10::string_view truncated) {
  if (truncated == "keep") {
    return TruncatedMode::kKeep;
  }
  if (truncated == "downweight") {
    return TruncatedMode::kDownweight;
  }
  TORCH_CHECK_VALUE(truncated == "drop",
                    "merge_tiles: truncated must be one of ('keep', 'downweight', 'drop'), got '", truncated,
                    "'");
  return TruncatedMode::kDrop;
}

void check_merge_tiles_facts(const MergeTilesFacts& facts, int64_t num_tiles, int64_t num_images) {
  TORCH_CHECK_VALUE(facts.boxes_finite, "merge_tiles: boxes must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(facts.scores_finite, "merge_tiles: scores must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(facts.labels_nonnegative, "merge_tiles: labels must be >= 0");
  TORCH_CHECK_VALUE(facts.tile_index_in_range, "merge_tiles: tile_index must be in [0, ", num_tiles,
                    ") (rows of tiles)");
  TORCH_CHECK_VALUE(facts.tile_image_in_range, "merge_tiles: tile_image must be in [0, ", num_images,
                    ") (rows of image_sizes)");
  TORCH_CHECK_VALUE(facts.tiles_valid, "merge_tiles: tiles must be finite with x2 > x1 and y2 > y1");
  TORCH_CHECK_VALUE(facts.tile_scales_valid, "merge_tiles: tile_scales must be finite and > 0");
  TORCH_CHECK_VALUE(facts.image_sizes_valid, "merge_tiles: image_sizes must be finite and > 0");
}

MergedDetections merge_tiles_with(const MergeTilesInput& input,
                                  const MergeTilesOptions& options,
                                  const MergeTilesBackend& backend) {
  check_args(input, options);
  if (input.boxes.size(0) == 0) {
    return {input.boxes.new_empty({0, 4}), input.scores.new_empty({0}), input.labels.new_empty({0}),
            input.labels.new_empty({0})};
  }
  return backend.merge(input, options);
}

TORCH_LIBRARY_FRAGMENT(tinyfast, m) {
  m.def(
      "merge_tiles(Tensor boxes, Tensor scores, Tensor labels, Tensor tile_index, Tensor tiles, "
      "Tensor tile_scales, Tensor tile_flips, Tensor tile_image, Tensor image_sizes, float score_threshold, "
      "float iou_threshold, bool class_agnostic, int? max_per_image, str truncated, float truncated_iof, "
      "float truncated_factor) -> (Tensor boxes, Tensor scores, Tensor labels, Tensor image_index)");
}

}  // namespace tinyfast
