// Launchers of the merge CUDA kernels: raw pointers and a stream, no torch types (see batched_nms_kernels.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tinyfast {
namespace cuda {

template <typename T>
struct TileLayout {
  const int64_t* tile_of_box;    // [n]
  const T* tiles;                // [T, 4]
  const T* scales;               // [T, 2]
  const bool* flips;             // [T]
  const int64_t* image_of_tile;  // [T]
  const T* image_sizes;          // [I, 2]
};

template <typename T>
void launch_place_boxes(
    const T* boxes, int64_t n, TileLayout<T> layout, T* image_boxes, bool* truncated, cudaStream_t stream);

// Boxes listed by image: order[p] is a box index, image_end[p] the end of its image's run in order.
// Brute force within an image: every truncated box against every box of its image.
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
                              cudaStream_t stream);

}  // namespace cuda
}  // namespace tinyfast
