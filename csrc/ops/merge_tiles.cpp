#include "ops/merge_tiles.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <limits>

namespace tinyfast {
namespace {

void check_tensor(const at::Tensor& t, const char* name, int64_t dim, int64_t rows, int64_t cols = -1) {
  const bool shape_ok = t.dim() == dim && t.size(0) == rows && (cols < 0 || t.size(1) == cols);
  if (cols < 0) {
    TORCH_CHECK_VALUE(shape_ok, "merge_tiles: ", name, " must have shape [", rows, "], got ", t.sizes());
  } else {
    TORCH_CHECK_VALUE(shape_ok, "merge_tiles: ", name, " must have shape [", rows, ", ", cols, "], got ", t.sizes());
  }
}

}  // namespace

void check_merge_tiles_args(const MergeTilesInput& in, const MergeTilesOptions& options) {
  const int64_t n = in.boxes.size(0);
  TORCH_CHECK_VALUE(
      in.boxes.dim() == 2 && in.boxes.size(1) == 4, "merge_tiles: boxes must have shape [N, 4], got ", in.boxes.sizes());
  TORCH_CHECK_VALUE(
      in.boxes.scalar_type() == at::kFloat || in.boxes.scalar_type() == at::kDouble,
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
  TORCH_CHECK_VALUE(in.scores.is_floating_point(), "merge_tiles: scores must be floating point, got ", in.scores.scalar_type());
  TORCH_CHECK_VALUE(in.labels.scalar_type() == at::kLong, "merge_tiles: labels must be int64, got ", in.labels.scalar_type());
  TORCH_CHECK_VALUE(
      in.tile_index.scalar_type() == at::kLong, "merge_tiles: tile_index must be int64, got ", in.tile_index.scalar_type());
  TORCH_CHECK_VALUE(
      in.tiles.scalar_type() == in.boxes.scalar_type() && in.tile_scales.scalar_type() == in.boxes.scalar_type() &&
          in.image_sizes.scalar_type() == in.boxes.scalar_type(),
      "merge_tiles: tiles, tile_scales and image_sizes must have the dtype of boxes (", in.boxes.scalar_type(), ")");
  TORCH_CHECK_VALUE(in.tile_flips.scalar_type() == at::kBool, "merge_tiles: tile_flips must be bool, got ", in.tile_flips.scalar_type());
  TORCH_CHECK_VALUE(
      in.tile_image.scalar_type() == at::kLong, "merge_tiles: tile_image must be int64, got ", in.tile_image.scalar_type());
  for (const at::Tensor* t : {&in.scores, &in.labels, &in.tile_index, &in.tiles, &in.tile_scales, &in.tile_flips,
                              &in.tile_image, &in.image_sizes}) {
    TORCH_CHECK_VALUE(
        t->device() == in.boxes.device(), "merge_tiles: all tensors must be on the device of boxes (", in.boxes.device(),
        "), found one on ", t->device());
  }
  TORCH_CHECK_VALUE(!std::isnan(options.score_threshold), "merge_tiles: score_threshold must not be NaN");
  TORCH_CHECK_VALUE(
      !std::isnan(options.iou_threshold) && options.iou_threshold >= 0, "merge_tiles: iou_threshold must be >= 0, got ",
      options.iou_threshold);
  TORCH_CHECK_VALUE(
      options.max_per_image >= -1, "merge_tiles: max_per_image must be >= 0, or -1 for no cap, got ", options.max_per_image);
  TORCH_CHECK_VALUE(
      options.truncated == "keep" || options.truncated == "downweight" || options.truncated == "drop",
      "merge_tiles: truncated must be 'keep', 'downweight' or 'drop', got '", options.truncated, "'");
  TORCH_CHECK_VALUE(
      options.truncated_iof > 0 && options.truncated_iof <= 1, "merge_tiles: truncated_iof must be in (0, 1], got ",
      options.truncated_iof);
  TORCH_CHECK_VALUE(
      options.truncated_factor >= 0 && options.truncated_factor <= 1,
      "merge_tiles: truncated_factor must be in [0, 1], got ", options.truncated_factor);
  TORCH_CHECK_VALUE(n < std::numeric_limits<int32_t>::max(), "merge_tiles: boxes has more than 2^31 - 1 rows");
  TORCH_CHECK_VALUE(
      n == 0 || (num_tiles > 0 && num_images > 0), "merge_tiles: boxes need at least one tile and one image, got ",
      num_tiles, " tiles and ", num_images, " images");
}

void check_merge_tiles_facts(const MergeTilesFacts& facts, int64_t num_tiles, int64_t num_images) {
  TORCH_CHECK_VALUE(facts.boxes_finite, "merge_tiles: boxes must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(facts.scores_finite, "merge_tiles: scores must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(facts.labels_nonnegative, "merge_tiles: labels must be >= 0");
  TORCH_CHECK_VALUE(facts.tile_index_in_range, "merge_tiles: tile_index must be in [0, ", num_tiles, ") (rows of tiles)");
  TORCH_CHECK_VALUE(facts.tile_image_in_range, "merge_tiles: tile_image must be in [0, ", num_images, ") (rows of image_sizes)");
  TORCH_CHECK_VALUE(facts.tiles_valid, "merge_tiles: tiles must be finite with x2 > x1 and y2 > y1");
  TORCH_CHECK_VALUE(facts.tile_scales_valid, "merge_tiles: tile_scales must be finite and > 0");
  TORCH_CHECK_VALUE(facts.image_sizes_valid, "merge_tiles: image_sizes must be finite and > 0");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> empty_merge_result(const MergeTilesInput& in) {
  return {in.boxes.new_empty({0, 4}), in.scores.new_empty({0}), in.labels.new_empty({0}), in.labels.new_empty({0})};
}

namespace {

// The checks that read the data, in one host sync (a copy of a few flags on CUDA); returns the number of
// classes (1 + the largest label).
int64_t check_values(const MergeTilesInput& in) {
  const int64_t num_tiles = in.tiles.size(0);
  const int64_t num_images = in.image_sizes.size(0);
  const at::Tensor facts = at::stack({
                                         at::isfinite(in.boxes).all().to(at::kLong),
                                         at::isfinite(in.scores).all().to(at::kLong),
                                         in.labels.min().ge(0).to(at::kLong),
                                         in.labels.max() + 1,
                                         (in.tile_index.min().ge(0) & in.tile_index.max().lt(num_tiles)).to(at::kLong),
                                         (in.tile_image.min().ge(0) & in.tile_image.max().lt(num_images)).to(at::kLong),
                                         (at::isfinite(in.tiles).all() & (in.tiles.select(1, 2) > in.tiles.select(1, 0)).all() &
                                          (in.tiles.select(1, 3) > in.tiles.select(1, 1)).all())
                                             .to(at::kLong),
                                         (at::isfinite(in.tile_scales).all() & in.tile_scales.gt(0).all()).to(at::kLong),
                                         (at::isfinite(in.image_sizes).all() & in.image_sizes.gt(0).all()).to(at::kLong),
                                     })
                               .cpu();
  const int64_t* fact = facts.data_ptr<int64_t>();
  check_merge_tiles_facts({fact[0] == 1, fact[1] == 1, fact[2] == 1, fact[4] == 1, fact[5] == 1, fact[6] == 1,
                           fact[7] == 1, fact[8] == 1},
                          num_tiles, num_images);
  return fact[3];
}

at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& groups, double iou, int64_t cap) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tinyfast::batched_nms", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, int64_t)>();
  return op.call(boxes, scores, groups, iou, cap);
}

// keep (by score descending) reordered by image, score descending within an image, with at most `cap`
// boxes per image when cap >= 0.
at::Tensor by_image_capped(const at::Tensor& keep, const at::Tensor& keep_image, int64_t cap) {
  const at::Tensor order = std::get<1>(keep_image.sort(/*stable=*/true, 0, /*descending=*/false));
  const at::Tensor by_image = keep.index_select(0, order);
  if (cap < 0 || keep.size(0) == 0) {
    return by_image;
  }
  const at::Tensor images = keep_image.index_select(0, order);
  const at::Tensor first_of_image = at::searchsorted(images, images);
  const at::Tensor rank_in_image = at::arange(images.size(0), images.options()) - first_of_image;
  return by_image.index({rank_in_image.lt(cap)});
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> merge_tiles_with(
    const MergeTilesInput& in,
    const MergeTilesOptions& options,
    const MergeTilesKernels& kernels) {
  check_merge_tiles_args(in, options);
  const int64_t n = in.boxes.size(0);
  if (n == 0) {
    return empty_merge_result(in);
  }
  const int64_t num_classes = check_values(in);

  at::Tensor image_boxes = at::empty_like(in.boxes, at::MemoryFormat::Contiguous);
  at::Tensor truncated = at::empty({n}, in.boxes.options().dtype(at::kBool));
  kernels.place_boxes(in, image_boxes, truncated);
  const at::Tensor box_image = in.tile_image.index_select(0, in.tile_index);

  at::Tensor scores = in.scores;
  at::Tensor candidate = in.scores.gt(options.score_threshold);
  if (options.truncated != "keep") {
    const at::Tensor covered = kernels.covered_truncated(
        image_boxes, truncated, in.tile_index, box_image, in.labels, options.class_agnostic, options.truncated_iof);
    if (options.truncated == "drop") {
      candidate &= covered.logical_not();
    } else {
      scores = at::where(covered, scores * options.truncated_factor, scores);
    }
  }
  const at::Tensor selected = candidate.nonzero().squeeze(1);
  const at::Tensor selected_image = box_image.index_select(0, selected);
  const at::Tensor selected_labels = in.labels.index_select(0, selected);
  const at::Tensor groups = options.class_agnostic ? selected_image : selected_image * num_classes + selected_labels;
  const at::Tensor keep_in_selected = batched_nms(
      image_boxes.index_select(0, selected), scores.index_select(0, selected), groups, options.iou_threshold,
      options.class_agnostic ? options.max_per_image : -1);
  const at::Tensor keep = by_image_capped(
      selected.index_select(0, keep_in_selected), selected_image.index_select(0, keep_in_selected),
      options.class_agnostic ? -1 : options.max_per_image);
  return {image_boxes.index_select(0, keep), scores.index_select(0, keep), in.labels.index_select(0, keep),
          box_image.index_select(0, keep)};
}

}  // namespace tinyfast
