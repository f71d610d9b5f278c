#include "ops/cuda/merge_tiles_kernels.h"
#include "tile_math.h"

namespace tinyfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  return static_cast<int>((n + kThreads - 1) / kThreads);
}

template <typename T>
__global__ void place_boxes_kernel(
    const T* boxes, int64_t n, TileLayout<T> layout, T* image_boxes, bool* truncated) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) {
    return;
  }
  const int64_t t = layout.tile_of_box[i];
  const T* tile = layout.tiles + 4 * t;
  const T* size = layout.image_sizes + 2 * layout.image_of_tile[t];
  T crop_box[4];
  box_in_crop(boxes + 4 * i, tile, layout.scales[2 * t], layout.scales[2 * t + 1], layout.flips[t], crop_box);
  crop_box_in_image(crop_box, tile, size[0], size[1], image_boxes + 4 * i);
  truncated[i] = touches_internal_tile_border(crop_box, tile, size[0], size[1]);
}

template <typename T>
__global__ void covered_truncated_kernel(const T* image_boxes,
                                         const bool* truncated,
                                         const int64_t* box_tile,
                                         const int64_t* labels,
                                         const int64_t* order,
                                         const int64_t* image_start,
                                         const int64_t* image_end,
                                         int64_t n,
                                         bool class_agnostic,
                                         double iof,
                                         bool* covered) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= n) {
    return;
  }
  const int64_t i = order[p];
  bool found = false;
  if (truncated[i]) {
    for (int64_t q = image_start[p]; q < image_end[p] && !found; ++q) {
      const int64_t j = order[q];
      found = !truncated[j] && box_tile[j] != box_tile[i] && (class_agnostic || labels[j] == labels[i]) &&
              mostly_inside(image_boxes + 4 * i, image_boxes + 4 * j, iof);
    }
  }
  covered[i] = found;
}

}  // namespace

template <typename T>
void launch_place_boxes(
    const T* boxes, int64_t n, TileLayout<T> layout, T* image_boxes, bool* truncated, cudaStream_t stream) {
  place_boxes_kernel<<<blocks_for(n), kThreads, 0, stream>>>(boxes, n, layout, image_boxes, truncated);
}

template <typename T>
void launch_covered_truncated(const T* image_boxes,
                              const bool* truncated,
                              const int64_t* box_tile,
                              const int64_t* labels,
                              const int64_t* order,
                              const int64_t* image_start,
                              const int64_t* image_end,
                              int64_t n,
                              bool class_agnostic,
                              double iof,
                              bool* covered,
                              cudaStream_t stream) {
  covered_truncated_kernel<<<blocks_for(n), kThreads, 0, stream>>>(image_boxes, truncated, box_tile, labels,
                                                                   order, image_start, image_end, n,
                                                                   class_agnostic, iof, covered);
}

template void launch_place_boxes<float>(
    const float*, int64_t, TileLayout<float>, float*, bool*, cudaStream_t);
template void launch_place_boxes<double>(
    const double*, int64_t, TileLayout<double>, double*, bool*, cudaStream_t);
template void launch_covered_truncated<float>(const float*,
                                              const bool*,
                                              const int64_t*,
                                              const int64_t*,
                                              const int64_t*,
                                              const int64_t*,
                                              const int64_t*,
                                              int64_t,
                                              bool,
                                              double,
                                              bool*,
                                              cudaStream_t);
template void launch_covered_truncated<double>(const double*,
                                               const bool*,
                                               const int64_t*,
                                               const int64_t*,
                                               const int64_t*,
                                               const int64_t*,
                                               const int64_t*,
                                               int64_t,
                                               bool,
                                               double,
                                               bool*,
                                               cudaStream_t);

}  // namespace cuda
}  // namespace tinyfast
