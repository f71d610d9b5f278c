#include "ops/box_buckets.h"

#include <limits>

namespace tinyfast {
namespace {

// Grid cells per box of an image (the grid covers the union of its boxes).
constexpr int64_t kCellsPerBox = 2;

}  // namespace

at::Tensor cell_along(const at::Tensor& v,
                      const at::Tensor& origin,
                      const at::Tensor& cells_per_unit,
                      const at::Tensor& cells) {
  // NaN only from inf * 0 (a union wider than the largest float): then every coordinate maps to cell 0.
  const at::Tensor cell = (v - origin).mul(cells_per_unit).nan_to_num(0.0).floor().clamp_min(0);
  return at::minimum(cell, cells - 1).to(at::kLong);
}

at::Tensor counts_sum_to(const at::Tensor& counts, int64_t total) {
  TORCH_INTERNAL_ASSERT(total <= std::numeric_limits<int64_t>::max() / 2);
  return counts.le(total)
      .all()
      .logical_and(counts.cumsum(0).le(total).all())
      .logical_and(counts.sum().eq(total));
}

// No host sync: arrays are sized by bounds known from the shapes.
BoxBuckets bucket_boxes(const at::Tensor& boxes, const at::Tensor& counts, int64_t max_cells_per_box) {
  const int64_t num_images = counts.size(0);
  const int64_t num_boxes = boxes.size(0);
  const double inf = std::numeric_limits<double>::infinity();
  const at::Tensor image_of_box = at::repeat_interleave(counts, std::optional<int64_t>(num_boxes));
  const at::Tensor x1 = boxes.select(1, 0), y1 = boxes.select(1, 1), x2 = boxes.select(1, 2),
                   y2 = boxes.select(1, 3);
  const at::Tensor has_area = x2.gt(x1).logical_and(y2.gt(y1));
  const auto bound = [&](const at::Tensor& values, double empty, const char* reduce) {
    return at::full({num_images}, empty, boxes.options())
        .scatter_reduce(0, image_of_box, at::where(has_area, values, empty), reduce, /*include_self=*/true);
  };
  BoxBuckets buckets;
  buckets.lo_x = bound(x1, inf, "amin");
  buckets.lo_y = bound(y1, inf, "amin");
  buckets.hi_x = bound(x2, -inf, "amax");
  buckets.hi_y = bound(y2, -inf, "amax");

  // About kCellsPerBox cells per box, as square as the union allows: nx * ny <= target.
  const at::Tensor width = (buckets.hi_x - buckets.lo_x).clamp_min(0);
  const at::Tensor height = (buckets.hi_y - buckets.lo_y).clamp_min(0);
  const at::Tensor target = counts.clamp_min(1).mul(kCellsPerBox).to(boxes.scalar_type());
  const at::Tensor nx =
      at::minimum(at::sqrt(target * width / height).nan_to_num(1.0).floor().clamp_min(1), target);
  const at::Tensor ny = (target / nx).floor().clamp_min(1);
  buckets.columns = nx;
  buckets.rows = ny;
  buckets.x_cells_per_unit = at::where(width.gt(0), nx / width, 0.0);
  buckets.y_cells_per_unit = at::where(height.gt(0), ny / height, 0.0);
  const at::Tensor nx_long = nx.to(at::kLong), ny_long = ny.to(at::kLong);
  // Each image's cells, then one cell listing its large boxes.
  const at::Tensor cells_per_image = nx_long * ny_long + 1;
  buckets.cell_offsets = cells_per_image.cumsum(0) - cells_per_image;
  buckets.large_cells = buckets.cell_offsets + nx_long * ny_long;
  const int64_t cells_bound = kCellsPerBox * (num_boxes + num_images) + num_images;

  const auto per_box = [&](const at::Tensor& per_image) { return per_image.index_select(0, image_of_box); };
  const at::Tensor box_nx = per_box(nx), box_ny = per_box(ny), box_nx_long = per_box(nx_long);
  const at::Tensor box_lo_x = per_box(buckets.lo_x), box_lo_y = per_box(buckets.lo_y);
  const at::Tensor box_x_cpu = per_box(buckets.x_cells_per_unit),
                   box_y_cpu = per_box(buckets.y_cells_per_unit);
  const at::Tensor first_x = cell_along(x1, box_lo_x, box_x_cpu, box_nx);
  const at::Tensor first_y = cell_along(y1, box_lo_y, box_y_cpu, box_ny);
  const at::Tensor span_x = (cell_along(x2, box_lo_x, box_x_cpu, box_nx) - first_x + 1).clamp_min(1);
  const at::Tensor span_y = (cell_along(y2, box_lo_y, box_y_cpu, box_ny) - first_y + 1).clamp_min(1);
  const at::Tensor spanned = span_x * span_y;
  const at::Tensor large = spanned.gt(max_cells_per_box);

  // Slot k of a box is cell (first_x + k % span_x, first_y + k / span_x) of its span; slot 0 of a large box
  // is its image's large cell. Unused slots get the key cells_bound, sorted past every cell.
  const at::Tensor slot = at::arange(max_cells_per_box, counts.options()).unsqueeze(0);
  const at::Tensor column = first_x.unsqueeze(1) + slot.remainder(span_x.unsqueeze(1));
  const at::Tensor row = first_y.unsqueeze(1) + slot.div(span_x.unsqueeze(1), "floor");
  const at::Tensor grid_key =
      per_box(buckets.cell_offsets).unsqueeze(1) + row * box_nx_long.unsqueeze(1) + column;
  const at::Tensor large_key =
      per_box(buckets.large_cells).unsqueeze(1).expand({num_boxes, max_cells_per_box});
  const at::Tensor listed = has_area.unsqueeze(1).logical_and(
      at::where(large.unsqueeze(1), slot.eq(0), slot.lt(spanned.unsqueeze(1))));
  const at::Tensor keys =
      at::where(listed, at::where(large.unsqueeze(1), large_key, grid_key), cells_bound).flatten();
  const auto [sorted_keys, order] = keys.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  buckets.cell_items = order.div(max_cells_per_box, "floor").contiguous();
  buckets.cell_starts =
      at::searchsorted(sorted_keys, at::arange(cells_bound + 1, counts.options())).contiguous();
  return buckets;
}

}  // namespace tinyfast
