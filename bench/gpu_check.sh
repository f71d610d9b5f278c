#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU: build the ops there (CUDA kernels included), run the CUDA
# tests (each compares the CUDA op with the CPU op), run the benchmarks on CPU and GPU, print a table.
# Prepared to finish in under 8 minutes on 16 cores. Logs and the benchmark json go to $OUT (or a tmp dir).
#
#     bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$(mktemp -d)}"
status=0

python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())" || exit 1

export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"
start=$(date +%s)
python3 setup.py build_ext --inplace >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; exit 1; }
echo "build: $(($(date +%s) - start)) s"
python3 -c "import tinyfast; assert tinyfast.ops.cuda_available_in_build(), 'CUDA kernels not built'" || exit 1

# The CUDA tests live beside the CPU tests; files that need packages absent there (pycocotools) are left out.
python3 -m pytest tests/test_batched_nms.py tests/test_merge_tiles.py tests/test_fcos_targets.py tests/test_modeling_fcos.py -m cuda -q -p no:cacheprovider 2>&1 | tee "$out/cuda_tests.log" \
  || status=1
python3 -m pytest bench/bench_nms.py bench/bench_merge.py bench/bench_fcos_targets.py bench/bench_end_to_end.py \
  bench/bench_train_step.py --benchmark-only -q -p no:cacheprovider \
  --benchmark-json "$out/bench.json" 2>&1 | tee "$out/bench.log" || status=1
python3 -m bench.report "$out/bench.json"
exit $status
