// Tile math shared by the CPU and CUDA merge kernels: from a detector's tile coordinates to the full image,
// and which boxes a tile border cut. Tiles are (x1, y1, x2, y2) crops of their image, in image pixels.
#pragma once

#include "box_math.h"

namespace tinyfast {

// A box cut by a tile side lies within this many image pixels of it.
constexpr double kTileBorderMargin = 1.0;

// The box as seen in the crop before the detector's resize by (scale_x, scale_y) and horizontal flip, in
// crop coordinates: divide by the scale, then mirror within the crop's width. The order of the operations is
// the contract (the reference composition in the tests uses the same one), so results match bit for bit.
template <typename T>
TF_HOST_DEVICE void box_in_crop(const T* box, const T* tile, T scale_x, T scale_y, bool flipped, T* out) {
  const T x1 = box[0] / scale_x;
  const T x2 = box[2] / scale_x;
  const T crop_width = tile[2] - tile[0];
  out[0] = flipped ? crop_width - x2 : x1;
  out[1] = box[1] / scale_y;
  out[2] = flipped ? crop_width - x1 : x2;
  out[3] = box[3] / scale_y;
}

// A crop-coordinate box shifted by the tile's offset and clipped to the image [0, width] x [0, height].
template <typename T>
TF_HOST_DEVICE void crop_box_in_image(
    const T* crop_box, const T* tile, T image_width, T image_height, T* out) {
  out[0] = tf_min(tf_max(crop_box[0] + tile[0], T(0)), image_width);
  out[1] = tf_min(tf_max(crop_box[1] + tile[1], T(0)), image_height);
  out[2] = tf_min(tf_max(crop_box[2] + tile[0], T(0)), image_width);
  out[3] = tf_min(tf_max(crop_box[3] + tile[1], T(0)), image_height);
}

// True when a crop-coordinate box reaches a side of its tile that is inside the image (not an image border):
// the object probably continues in the neighbouring tile.
template <typename T>
TF_HOST_DEVICE bool touches_internal_tile_border(const T* crop_box,
                                                 const T* tile,
                                                 T image_width,
                                                 T image_height) {
  const double margin = kTileBorderMargin;
  return (tile[0] > 0 && crop_box[0] <= margin) || (tile[1] > 0 && crop_box[1] <= margin) ||
         (tile[2] < image_width && crop_box[2] >= static_cast<double>(tile[2] - tile[0]) - margin) ||
         (tile[3] < image_height && crop_box[3] >= static_cast<double>(tile[3] - tile[1]) - margin);
}

// Intersection over the area of `part` >= threshold: `part` lies (mostly) inside `whole`. Boxes without
// positive extent never match.
template <typename T>
TF_HOST_DEVICE bool mostly_inside(const T* part, const T* whole, double threshold) {
  if (!has_positive_extent(part) || !has_positive_extent(whole)) {
    return false;
  }
  return static_cast<double>(intersection_area(part, whole)) >=
         threshold * static_cast<double>(box_area(part));
}

}  // namespace tinyfast
