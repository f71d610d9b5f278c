#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU: build the ops there (CUDA kernels included), run the CUDA
# tests (each compares the CUDA path with the CPU one: the four ops, the three detectors and their batched
# post-processing, reading ahead onto the GPU, a compiled detector's CUDA graph, a bf16 training run with its
# tiled evaluation, one NCCL process under torchrun), run the GPU benchmarks, print a table.
# Prepared to finish in under 8 minutes on 16 cores; each stage has a time limit, so a hang costs one stage.
# Logs, the benchmark json and report, and the built extension go to $OUT (or a tmp dir): 8 files.
#
#     bash bench/gpu_check.sh
#
# Python packages missing there (pycocotools, sahi, shapely) travel as wheels in .whl/ (see
# /work/.library/device/README.md); they are installed into a temporary folder first.
set -uo pipefail
source "$(dirname "$0")/device_env.sh"  # cd to the repository, $out, the .whl/ packages, stage()
status=0
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())" || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader

export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"
stage build 300 python3 setup.py build_ext --inplace || { tail -n 60 "$out/build.log"; exit 1; }
cp tinyfast/_C*.so "$out/" 2>/dev/null
python3 -c "import tinyfast; assert tinyfast.ops.cuda_available_in_build(), 'CUDA kernels not built'" || exit 1

pytest_args=(-q -p no:cacheprovider -rfEs)
stage cuda_tests 260 python3 -m pytest tests/test_batched_nms.py tests/test_merge_tiles.py \
  tests/test_fcos_targets.py tests/test_max_iou_assign.py tests/test_modeling_fcos.py \
  tests/test_modeling_detectors.py tests/test_engine_distributed.py tests/test_batched_postprocess.py \
  tests/test_utils_prefetch.py tests/test_modeling_inference.py -m cuda "${pytest_args[@]}" || status=1
tail -n 25 "$out/cuda_tests.log"
stage gpu_training 120 python3 -m pytest tests/test_engine.py -k "smoke_run" "${pytest_args[@]}" || status=1
tail -n 5 "$out/gpu_training.log"

stage benchmarks 300 python3 -m pytest bench/bench_batched_nms.py bench/bench_merge_tiles.py bench/bench_fcos_targets.py \
  bench/bench_max_iou_assign.py bench/bench_end_to_end.py bench/bench_train_step.py bench/bench_precision.py \
  bench/bench_inference.py bench/bench_data_pipeline.py -k cuda --benchmark-only \
  "${pytest_args[@]}" --benchmark-json "$out/bench.json" || status=1
grep -A 30 "tinyfast benchmarks" "$out/benchmarks.log"
[ -s "$out/bench.json" ] && python3 -m bench.report "$out/bench.json"  # report.md, report.png beside it
exit $status
