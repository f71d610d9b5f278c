// Merge of tiled detections on CUDA: the per-box kernels (merge_tiles_kernels.cu); the steps around them are
// in ops/merge_tiles.cpp.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

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
  const cuda::TileLayout<T> layout{tile_index.data_ptr<int64_t>(), tiles.data_ptr<T>(), scales.data_ptr<T>(),
                                   flips.data_ptr<bool>(), tile_image.data_ptr<int64_t>(), sizes.data_ptr<T>()};
  cuda::launch_place_boxes(boxes.data_ptr<T>(), boxes.size(0), layout, image_boxes.data_ptr<T>(),
                           truncated.data_ptr<bool>(), c10::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void place_boxes_cuda(const MergeTilesInput& in, at::Tensor& image_boxes, at::Tensor& truncated) {
  const c10::cuda::CUDAGuard device_guard(in.boxes.device());
  if (in.boxes.scalar_type() == at::kDouble) {
    place_boxes_typed<double>(in, image_boxes, truncated);
  } else {
    place_boxes_typed<float>(in, image_boxes, truncated);
  }
}

at::Tensor covered_truncated_cuda(
    const at::Tensor& image_boxes,
    const at::Tensor& truncated,
    const at::Tensor& box_tile,
    const at::Tensor& box_image,
    const at::Tensor& labels,
    bool class_agnostic,
    double iof) {
  const c10::cuda::CUDAGuard device_guard(image_boxes.device());
  const at::Tensor order = std::get<1>(box_image.sort(/*stable=*/true, 0, false)).contiguous();
  const at::Tensor images = box_image.index_select(0, order).contiguous();
  const at::Tensor image_start = at::searchsorted(images, images).contiguous();
  const at::Tensor image_end = at::searchsorted(images, images, /*out_int32=*/false, /*right=*/true).contiguous();
  const at::Tensor tile_c = box_tile.contiguous();
  const at::Tensor labels_c = labels.contiguous();
  at::Tensor covered = at::empty_like(truncated);
  const int64_t n = image_boxes.size(0);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (image_boxes.scalar_type() == at::kDouble) {
    cuda::launch_covered_truncated(image_boxes.data_ptr<double>(), truncated.data_ptr<bool>(), tile_c.data_ptr<int64_t>(),
                                   labels_c.data_ptr<int64_t>(), order.data_ptr<int64_t>(), image_start.data_ptr<int64_t>(),
                                   image_end.data_ptr<int64_t>(), n, class_agnostic, iof, covered.data_ptr<bool>(), stream);
  } else {
    cuda::launch_covered_truncated(image_boxes.data_ptr<float>(), truncated.data_ptr<bool>(), tile_c.data_ptr<int64_t>(),
                                   labels_c.data_ptr<int64_t>(), order.data_ptr<int64_t>(), image_start.data_ptr<int64_t>(),
                                   image_end.data_ptr<int64_t>(), n, class_agnostic, iof, covered.data_ptr<bool>(), stream);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return covered;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> merge_tiles_cuda(
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
  const c10::cuda::CUDAGuard device_guard(boxes.device());
  return merge_tiles_with(
      {boxes, scores, labels, tile_index, tiles, tile_scales, tile_flips, tile_image, image_sizes},
      {score_threshold, iou_threshold, class_agnostic, max_per_image, std::string(truncated), truncated_iof,
       truncated_factor},
      {&place_boxes_cuda, &covered_truncated_cuda});
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("merge_tiles", &merge_tiles_cuda);
}

}  // namespace tinyfast
