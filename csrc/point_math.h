// Point math shared by the CPU and CUDA point NMS kernels: when a kept point suppresses another. Points are
// (x, y); every step is computed in double.
#pragma once

#include "box_math.h"

namespace tinyfast {

// The suppression radius of a kept point: threshold * its size. 0 (threshold or size 0) or NaN (an infinite
// threshold times a size of 0) suppresses nothing; +inf (an infinite threshold, or an overflow) suppresses
// every point at a finite offset.
TF_HOST_DEVICE double suppression_radius(double threshold, double size) {
  return mul_rn(threshold, size);
}

// Whether a radius can suppress anything at all (false for 0 and NaN).
TF_HOST_DEVICE bool can_suppress(double radius) {
  return radius > 0;
}

// Whether the point at offset (dx, dy) from a kept point lies strictly within the kept point's radius:
// |dx| < r, |dy| < r, and (dx / r)^2 + (dy / r)^2 < 1. Dividing by r first means no step overflows for any
// finite offset and radius (the squares of float64 offsets would beyond 1e154); an offset that overflowed to
// inf is never within. The order of the operations is the contract: the reference in the tests uses it.
TF_HOST_DEVICE bool offset_within(double dx, double dy, double radius) {
  if (!(dx < radius && -dx < radius && dy < radius && -dy < radius)) {
    return false;
  }
  const double u = dx / radius;
  const double v = dy / radius;
  return mul_rn(u, u) + mul_rn(v, v) < 1.0;
}

// Whether the kept point (kept_x, kept_y) with radius kept_radius suppresses the point (x, y).
TF_HOST_DEVICE bool point_suppresses(double kept_x, double kept_y, double kept_radius, double x, double y) {
  return offset_within(x - kept_x, y - kept_y, kept_radius);
}

}  // namespace tinyfast
