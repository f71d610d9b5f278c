// Merge of tiled detections on the CPU: the per-box kernels; the steps around them are in ops/merge_tiles.cpp.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

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

void place_boxes_cpu(const MergeTilesInput& in, at::Tensor& image_boxes, at::Tensor& truncated) {
  if (in.boxes.scalar_type() == at::kDouble) {
    place_boxes_typed<double>(in, image_boxes, truncated);
  } else {
    place_boxes_typed<float>(in, image_boxes, truncated);
  }
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

at::Tensor covered_truncated_cpu(
    const at::Tensor& image_boxes,
    const at::Tensor& truncated,
    const at::Tensor& box_tile,
    const at::Tensor& box_image,
    const at::Tensor& labels,
    bool class_agnostic,
    double iof) {
  return image_boxes.scalar_type() == at::kDouble
      ? covered_truncated_typed<double>(image_boxes, truncated, box_tile, box_image, labels, class_agnostic, iof)
      : covered_truncated_typed<float>(image_boxes, truncated, box_tile, box_image, labels, class_agnostic, iof);
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
  return merge_tiles_with(
      {boxes, scores, labels, tile_index, tiles, tile_scales, tile_flips, tile_image, image_sizes},
      {score_threshold, iou_threshold, class_agnostic, max_per_image, std::string(truncated), truncated_iof,
       truncated_factor},
      {&place_boxes_cpu, &covered_truncated_cpu});
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("merge_tiles", &merge_tiles_cpu);
}

}  // namespace tinyfast
