// Max-IoU assignment on the CPU: boxes in parallel, each reading only the GTs and ignore regions listed in
// the grid cells it covers. Each task reduces the per-GT maxima into its own row; the rows are reduced last.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "ops/max_iou_assign.h"

namespace tinyfast {
namespace {

constexpr int64_t kMinBoxesPerTask = 4096;

int64_t num_tasks(int64_t num_boxes) {
  return std::clamp<int64_t>((num_boxes + kMinBoxesPerTask - 1) / kMinBoxesPerTask, 1, at::get_num_threads());
}

// Task t takes boxes t, t + tasks, t + 2 tasks, ...: anchors come level by level with the large ones (that
// cover many cells) last, and this spreads them over the tasks.
template <typename Body>
void for_each_box(int64_t num_boxes, int64_t tasks, const Body& body) {
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      for (int64_t box = task; box < num_boxes; box += tasks) {
        body(task, box);
      }
    }
  });
}

template <typename T>
void first_pass_cpu(const AssignProblem<T>& problem) {
  const int64_t tasks = num_tasks(problem.num_boxes);
  const at::Tensor rows = at::zeros({tasks, problem.num_gts}, at::dtype(c10::CppTypeToScalarType<T>::value));
  T* const row_data = rows.data_ptr<T>();
  for_each_box(problem.num_boxes, tasks, [&](int64_t task, int64_t box) {
    T* const row = row_data + task * problem.num_gts;
    assign_box_first_pass(problem, box, [row](int64_t gt, T iou) { row[gt] = tf_max(row[gt], iou); });
  });
  const at::Tensor maxima = rows.amax(0);
  std::copy_n(maxima.data_ptr<T>(), problem.num_gts, problem.gt_max_iou);
}

template <typename T>
void argmax_pass_cpu(const AssignProblem<T>& problem) {
  const int64_t tasks = num_tasks(problem.num_boxes);
  const at::Tensor rows = at::full({tasks, problem.num_gts}, std::numeric_limits<int64_t>::max(), at::kLong);
  int64_t* const row_data = rows.data_ptr<int64_t>();
  for_each_box(problem.num_boxes, tasks, [&](int64_t task, int64_t box) {
    int64_t* const row = row_data + task * problem.num_gts;
    assign_box_argmax_pass(problem, box,
                           [row](int64_t gt, int64_t index) { row[gt] = tf_min(row[gt], index); });
  });
  const at::Tensor minima = rows.amin(0);
  std::copy_n(minima.data_ptr<int64_t>(), problem.num_gts, problem.gt_argmax);
}

template <typename T>
void low_quality_pass_cpu(const AssignProblem<T>& problem) {
  for_each_box(problem.num_boxes, num_tasks(problem.num_boxes),
               [&](int64_t, int64_t box) { assign_box_low_quality_pass(problem, box); });
}

template <typename T>
constexpr AssignPasses<T> cpu_passes() {
  return {&first_pass_cpu<T>, &argmax_pass_cpu<T>, &low_quality_pass_cpu<T>};
}

constexpr MaxIouAssignBackend kCpuBackend{cpu_passes<float>(), cpu_passes<double>()};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("max_iou_assign", &max_iou_assign_kernel<kCpuBackend>);
}

}  // namespace tinyfast
