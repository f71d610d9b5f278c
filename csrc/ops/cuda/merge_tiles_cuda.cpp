// Merge of tiled detections on CUDA: device-generic tensor operations (one host sync, for the checks that
// read the data) around two per-box kernels (merge_tiles_kernels.cu), then batched NMS on the device.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/batched_nms.h"
#include "ops/cuda/merge_tiles_kernels.h"
#include "ops/merge_tiles.h"

namespace tinyfast {
namespace {

template <typename T>
void place_boxes_typed(const MergeTilesInput& in, at::Tensor& image_boxes, at::Tensor& truncated) {
  const at::Tensor boxes = in.boxes.contiguous();
  const at::Tensor tile_index = in.tile_index.contiguous();
  const at::Tensor tiles = in.tiles.contiguous();
  const at::Tensor scales = in.tile_scales.contiguous();
  const at::Tensor flips = in.tile_flips.contiguous();
  const at::Tensor tile_image = in.tile_image.contiguous();
  const at::Tensor sizes = in.image_sizes.contiguous();
  const cuda::TileLayout<T> layout{tile_index.data_ptr<int64_t>(), tiles.data_ptr<T>(),
                                   scales.data_ptr<T>(),           flips.data_ptr<bool>(),
                                   tile_image.data_ptr<int64_t>(), sizes.data_ptr<T>()};
  cuda::launch_place_boxes(boxes.data_ptr<T>(), boxes.size(0), layout, image_boxes.data_ptr<T>(),
                           truncated.data_ptr<bool>(), c10::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void place_boxes_cuda(const MergeTilesInput& in, at::Tensor& image_boxes, at::Tensor& truncated) {
  if (in.boxes.scalar_type() == at::kDouble) {
    place_boxes_typed<double>(in, image_boxes, truncated);
  } else {
    place_boxes_typed<float>(in, image_boxes, truncated);
  }
}

at::Tensor covered_truncated_cuda(const at::Tensor& image_boxes,
                                  const at::Tensor& truncated,
                                  const at::Tensor& box_tile,
                                  const at::Tensor& box_image,
                                  const at::Tensor& labels,
                                  bool class_agnostic,
                                  double iof) {
  const at::Tensor order = std::get<1>(box_image.sort(/*stable=*/true, 0, false)).contiguous();
  const at::Tensor images = box_image.index_select(0, order).contiguous();
  const at::Tensor image_start = at::searchsorted(images, images).contiguous();
  const at::Tensor image_end =
      at::searchsorted(images, images, /*out_int32=*/false, /*right=*/true).contiguous();
  const at::Tensor tile_c = box_tile.contiguous();
  const at::Tensor labels_c = labels.contiguous();
  at::Tensor covered = at::empty_like(truncated);
  const int64_t n = image_boxes.size(0);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (image_boxes.scalar_type() == at::kDouble) {
    cuda::launch_covered_truncated(
        image_boxes.data_ptr<double>(), truncated.data_ptr<bool>(), tile_c.data_ptr<int64_t>(),
        labels_c.data_ptr<int64_t>(), order.data_ptr<int64_t>(), image_start.data_ptr<int64_t>(),
        image_end.data_ptr<int64_t>(), n, class_agnostic, iof, covered.data_ptr<bool>(), stream);
  } else {
    cuda::launch_covered_truncated(
        image_boxes.data_ptr<float>(), truncated.data_ptr<bool>(), tile_c.data_ptr<int64_t>(),
        labels_c.data_ptr<int64_t>(), order.data_ptr<int64_t>(), image_start.data_ptr<int64_t>(),
        image_end.data_ptr<int64_t>(), n, class_agnostic, iof, covered.data_ptr<bool>(), stream);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return covered;
}

// The checks that read the data, in one host sync (a copy of a few flags on CUDA); returns the number of
// classes (1 + the largest label).
int64_t check_values(const MergeTilesInput& in) {
  const int64_t num_tiles = in.tiles.size(0);
  const int64_t num_images = in.image_sizes.size(0);
  const at::Tensor facts =
      at::stack({
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

// The merge as tensor operations around the two per-box kernels.
MergedDetections merge_cuda(const MergeTilesInput& in, const MergeTilesOptions& options) {
  const c10::cuda::CUDAGuard device_guard(in.boxes.device());
  const int64_t n = in.boxes.size(0);
  const int64_t num_classes = check_values(in);

  at::Tensor image_boxes = at::empty_like(in.boxes, at::MemoryFormat::Contiguous);
  at::Tensor truncated = at::empty({n}, in.boxes.options().dtype(at::kBool));
  place_boxes_cuda(in, image_boxes, truncated);
  const at::Tensor box_image = in.tile_image.index_select(0, in.tile_index);

  at::Tensor scores = in.scores;
  at::Tensor candidate = in.scores.gt(options.score_threshold);
  if (options.truncated != TruncatedMode::kKeep) {
    const at::Tensor covered =
        covered_truncated_cuda(image_boxes, truncated, in.tile_index, box_image, in.labels,
                               options.class_agnostic, options.truncated_iof);
    if (options.truncated == TruncatedMode::kDrop) {
      candidate &= covered.logical_not();
    } else {
      scores = at::where(covered, scores * options.truncated_factor, scores);
    }
  }
  const at::Tensor selected = candidate.nonzero().squeeze(1);
  const at::Tensor selected_image = box_image.index_select(0, selected);
  const at::Tensor selected_labels = in.labels.index_select(0, selected);
  const at::Tensor groups =
      options.class_agnostic ? selected_image : selected_image * num_classes + selected_labels;
  const at::Tensor keep_in_selected =
      batched_nms(image_boxes.index_select(0, selected), scores.index_select(0, selected), groups,
                  options.iou_threshold, options.class_agnostic ? options.cap() : -1);
  const at::Tensor keep = by_image_capped(selected.index_select(0, keep_in_selected),
                                          selected_image.index_select(0, keep_in_selected),
                                          options.class_agnostic ? -1 : options.cap());
  return {image_boxes.index_select(0, keep), scores.index_select(0, keep), in.labels.index_select(0, keep),
          box_image.index_select(0, keep)};
}

constexpr MergeTilesBackend kCudaBackend{&merge_cuda};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("merge_tiles", &merge_tiles_kernel<kCudaBackend>);
}

}  // namespace tinyfast
