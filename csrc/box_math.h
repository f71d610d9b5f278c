// Box math shared by the CPU and CUDA kernels. Boxes are (x1, y1, x2, y2).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TF_HOST_DEVICE inline
#endif

namespace tinyfast {

template <typename T>
TF_HOST_DEVICE T tf_max(T a, T b) {
  return a > b ? a : b;
}

template <typename T>
TF_HOST_DEVICE T tf_min(T a, T b) {
  return a < b ? a : b;
}

// a * b rounded once, also in CUDA device code, where nvcc would otherwise fuse a product followed by an
// addition into one fma and round differently from the CPU and from PyTorch's separate operations.
TF_HOST_DEVICE float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

TF_HOST_DEVICE double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// Signed, as torchvision and mmdetection's bbox_overlaps compute it (no +1): an x2 < x1 box has negative
// area.
template <typename T>
TF_HOST_DEVICE T box_area(const T* b) {
  return mul_rn(b[2] - b[0], b[3] - b[1]);
}

// The area the boxes share: the overlap of their sides, each clamped at 0, as torchvision and mmdetection
// compute it.
template <typename T>
TF_HOST_DEVICE T intersection_area(const T* a, const T* b) {
  const T w = tf_max(tf_min(a[2], b[2]) - tf_max(a[0], b[0]), T(0));
  const T h = tf_max(tf_min(a[3], b[3]) - tf_max(a[1], b[1]), T(0));
  return mul_rn(w, h);
}

// Only boxes with x2 > x1 and y2 > y1 can overlap anything with positive area; the others can neither
// suppress nor be suppressed at a threshold >= 0 (their IoU is 0, -0 or NaN, never > threshold).
template <typename T>
TF_HOST_DEVICE bool has_positive_extent(const T* b) {
  return b[2] > b[0] && b[3] > b[1];
}

// Whether the boxes share interior points. When they do not, their intersection is 0 and so is their IoU:
// a cheap test before the division of iou_above.
template <typename T>
TF_HOST_DEVICE bool interiors_meet(const T* a, const T* b) {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

// IoU > threshold, with the operations in torchvision's order so that keep sets match bit for bit.
// The comparison is done in double, as torchvision's CPU kernel does.
template <typename T>
TF_HOST_DEVICE bool iou_above(const T* a, T area_a, const T* b, T area_b, double threshold) {
  const T inter = intersection_area(a, b);
  return static_cast<double>(inter / (area_a + area_b - inter)) > threshold;
}

}  // namespace tinyfast
