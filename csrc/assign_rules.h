// Max-IoU assignment, as mmdetection 2.x MaxIoUAssigner.assign does it, box by box: shared by the CPU and
// CUDA kernels. The overlaps are mmdetection's bbox_overlaps, in its order and precision, and the thresholds
// are compared in the boxes' type as PyTorch compares a tensor with a Python float, so that every `==` and
// every threshold agrees with a dense PyTorch computation.
//
// Three passes over the boxes, none of which holds a boxes x GTs matrix:
//  1. each box: its max IoU and best GT (ties to the lower GT index, as torch.max), whether it lies in an
//     ignore region, the assignment by thresholds; and each GT's max IoU over the boxes not ignored;
//  2. only for low-quality matching with gt_max_assign_all = false: each GT's first box at its max IoU;
//  3. only for low-quality matching: each box becomes a positive of the last GT (highest index) whose best
//     boxes it is among, as mmdetection's loop over GTs leaves it.
#pragma once

#include <cstdint>

#include "box_grid.h"
#include "box_math.h"

namespace tinyfast {

constexpr int64_t kAssignNegative = -1;
constexpr int64_t kAssignIgnored = -2;
// A box in an ignore region between passes 1 and 3: pass 3 must not make it positive, then writes -2.
constexpr int64_t kAssignInIgnoreRegion = -3;

template <typename T>
struct AssignProblem {
  const T* boxes;  // [N, 4]
  int64_t num_boxes;
  int64_t num_images;
  const int64_t* box_starts;  // [B + 1]: the first box of each image, then N
  const T* gt_boxes;          // [G, 4]
  int64_t num_gts;
  const int64_t* gt_starts;  // [B + 1]
  BoxGrid<T> gt_grid;
  const T* ignore_boxes;         // [I, 4]
  const int64_t* ignore_starts;  // [B + 1]
  BoxGrid<T> ignore_grid;
  bool use_ignore;
  // Thresholds rounded to T, as a tensor of type T compares with a Python float.
  T pos_iou;
  T neg_iou;
  T min_pos_iou;
  T ignore_iof;
  bool low_quality;
  bool gt_max_assign_all;
  int64_t* assigned_gt;  // [N]
  T* max_iou;            // [N]
  T* gt_max_iou;         // [G], zeros before pass 1
  int64_t* gt_argmax;    // [G], INT64_MAX before pass 2
};

// IoU of a GT and a box as bbox_overlaps(gt_boxes, boxes): the union clamped below by eps = 1e-6.
template <typename T>
TF_HOST_DEVICE T mmdet_iou(const T* gt, const T* box, T area_of_box) {
  const T overlap = intersection_area(gt, box);
  return overlap / tf_max(box_area(gt) + area_of_box - overlap, T(1e-6));
}

// IoF of a box with an ignore region, as bbox_overlaps(boxes, ignore_boxes, mode='iof').
template <typename T>
TF_HOST_DEVICE T mmdet_iof(const T* box, T area_of_box, const T* region) {
  return intersection_area(box, region) / tf_max(area_of_box, T(1e-6));
}

// The image of box `index`: the last image whose first box is <= index (images without boxes come before).
TF_HOST_DEVICE int64_t image_of(const int64_t* starts, int64_t num_images, int64_t index) {
  int64_t lo = 0, hi = num_images - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (starts[mid] <= index) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

template <typename T>
TF_HOST_DEVICE bool in_ignore_region(const AssignProblem<T>& p, int64_t image, const T* box, T area_of_box) {
  const int64_t first = p.ignore_starts[image];
  const int64_t count = p.ignore_starts[image + 1] - first;
  bool inside = false;
  if (count > 0) {
    for_each_box_near(p.ignore_grid, image, first, count, box, [&](int64_t region) {
      inside = mmdet_iof(box, area_of_box, p.ignore_boxes + 4 * region) > p.ignore_iof;
      return inside;
    });
  }
  return inside;
}

// mmdetection: every box starts as "ignored" (-1 there), below neg_iou it is negative, at or above pos_iou
// positive (in that order: with neg_iou > pos_iou positive wins).
template <typename T>
TF_HOST_DEVICE int64_t assign_by_thresholds(const AssignProblem<T>& p, T max_iou, int64_t best_gt) {
  if (max_iou >= p.pos_iou) {
    return best_gt;
  }
  if (max_iou >= T(0) && max_iou < p.neg_iou) {
    return kAssignNegative;
  }
  return kAssignIgnored;
}

// Pass 1 for one box; raise_gt_max(gt, iou) raises a GT's max IoU to iou (atomically where boxes run in
// parallel). Only IoUs > 0 are reported: a GT whose max IoU is 0 gets no low-quality positive anyway.
template <typename T, typename RaiseGtMax>
TF_HOST_DEVICE void assign_box_first_pass(const AssignProblem<T>& p, int64_t index, RaiseGtMax raise_gt_max) {
  const int64_t image = image_of(p.box_starts, p.num_images, index);
  const int64_t first_gt = p.gt_starts[image];
  const int64_t num_gts = p.gt_starts[image + 1] - first_gt;
  if (num_gts == 0) {  // mmdetection: an image without GTs has only negatives (ignore regions or not)
    p.max_iou[index] = T(0);
    p.assigned_gt[index] = kAssignNegative;
    return;
  }
  const T* box = p.boxes + 4 * index;
  // Every GT the grid does not visit has IoU 0 with the box: start from the image's first GT at IoU 0.
  T best_iou = T(0);
  int64_t best_gt = first_gt;
  bool ignored = false;
  if (has_positive_extent(box)) {
    const T area_of_box = box_area(box);
    ignored = p.use_ignore && in_ignore_region(p, image, box, area_of_box);
    for_each_box_near(p.gt_grid, image, first_gt, num_gts, box, [&](int64_t gt) {
      const T iou = mmdet_iou(p.gt_boxes + 4 * gt, box, area_of_box);
      if (iou > best_iou || (iou == best_iou && gt < best_gt)) {
        best_iou = iou;
        best_gt = gt;
      }
      if (!ignored && iou > T(0)) {
        raise_gt_max(gt, iou);
      }
      return false;
    });
  }
  p.max_iou[index] = best_iou;
  if (ignored) {
    p.assigned_gt[index] = p.low_quality ? kAssignInIgnoreRegion : kAssignIgnored;
  } else {
    p.assigned_gt[index] = assign_by_thresholds(p, best_iou, best_gt);
  }
}

// Calls visit(gt, iou) for each GT of the box's image that may end up with a low-quality positive (its max
// IoU is > 0 and >= min_pos_iou) and overlaps the box: the boxes of passes 2 and 3. A box can be a GT's best
// only at an IoU > 0: boxes that overlap no GT are skipped.
template <typename T, typename Visit>
TF_HOST_DEVICE void for_each_low_quality_candidate(const AssignProblem<T>& p, int64_t index, Visit visit) {
  if (p.assigned_gt[index] == kAssignInIgnoreRegion || !(p.max_iou[index] > T(0))) {
    return;
  }
  const int64_t image = image_of(p.box_starts, p.num_images, index);
  const int64_t first_gt = p.gt_starts[image];
  const int64_t num_gts = p.gt_starts[image + 1] - first_gt;
  const T* box = p.boxes + 4 * index;
  if (num_gts == 0 || !has_positive_extent(box)) {
    return;
  }
  const T area_of_box = box_area(box);
  for_each_box_near(p.gt_grid, image, first_gt, num_gts, box, [&](int64_t gt) {
    const T gt_max = p.gt_max_iou[gt];
    if (gt_max > T(0) && gt_max >= p.min_pos_iou) {
      visit(gt, mmdet_iou(p.gt_boxes + 4 * gt, box, area_of_box));
    }
    return false;
  });
}

// Pass 2 for one box; lower_gt_argmax(gt, index) lowers a GT's first best box to index (atomically where
// boxes run in parallel).
template <typename T, typename LowerGtArgmax>
TF_HOST_DEVICE void assign_box_argmax_pass(const AssignProblem<T>& p,
                                           int64_t index,
                                           LowerGtArgmax lower_gt_argmax) {
  for_each_low_quality_candidate(p, index, [&](int64_t gt, T iou) {
    if (iou == p.gt_max_iou[gt]) {
      lower_gt_argmax(gt, index);
    }
  });
}

// Pass 3 for one box.
template <typename T>
TF_HOST_DEVICE void assign_box_low_quality_pass(const AssignProblem<T>& p, int64_t index) {
  int64_t winner = -1;
  for_each_low_quality_candidate(p, index, [&](int64_t gt, T iou) {
    const bool best_box = p.gt_max_assign_all ? iou == p.gt_max_iou[gt] : p.gt_argmax[gt] == index;
    if (best_box && gt > winner) {
      winner = gt;
    }
  });
  int64_t& assigned = p.assigned_gt[index];
  if (assigned == kAssignInIgnoreRegion) {
    assigned = kAssignIgnored;
  } else if (winner >= 0) {
    assigned = winner;
  }
}

}  // namespace tinyfast
