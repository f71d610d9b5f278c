// The tinyfast operator library: schemas here, kernels in cpu/ and cuda/ (TORCH_LIBRARY_IMPL).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing tinyfast._C from Python runs the static registrations below; the module itself is empty.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(tinyfast, m) {
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold, int max_per_group) -> Tensor");
  m.def(
      "merge_tiles(Tensor boxes, Tensor scores, Tensor labels, Tensor tile_index, Tensor tiles, "
      "Tensor tile_scales, Tensor tile_flips, Tensor tile_image, Tensor image_sizes, float score_threshold, "
      "float iou_threshold, bool class_agnostic, int max_per_image, str truncated, float truncated_iof, "
      "float truncated_factor) -> (Tensor boxes, Tensor scores, Tensor labels, Tensor image_index)");
  m.def(
      "fcos_targets(Tensor points, int[] level_sizes, float[] strides, float[] regress_lo, float[] regress_hi, "
      "Tensor gt_boxes, Tensor gt_labels, Tensor gt_counts, int num_classes, float center_sampling_radius, "
      "bool norm_on_bbox) -> (Tensor labels, Tensor bbox_targets)");
  m.def(
      "max_iou_assign(Tensor boxes, Tensor box_counts, Tensor gt_boxes, Tensor gt_counts, Tensor ignore_boxes, "
      "Tensor ignore_counts, float pos_iou, float neg_iou, float min_pos_iou, bool low_quality, "
      "bool gt_max_assign_all, float ignore_iof) -> (Tensor assigned_gt, Tensor max_iou)");
  m.def("built_with_cuda() -> bool", []() {
#ifdef TINYFAST_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
}
