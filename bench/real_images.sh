#!/usr/bin/env bash
# Real images on a GPU: build the ops there (CUDA kernels included), then train each of the three detectors
# on rpi640 `train` for a fixed budget of training seconds each (bf16) and measure them on `valid`
# (`python -m bench.real_images`, whose arguments this passes on). Prepared to finish within 6 minutes on one
# H200 with the default budget of 70 s per detector (estimated, not yet measured): the build (seconds after
# the GPU check, which builds the same tree; a full build on a fresh machine), then each detector's set-up,
# budget and about 15 s of inference and scoring. The build log, the log, the table (real_images.md) and
# its json go to $OUT (or a tmp dir): 4 files; the runs to $RUNS (or a tmp dir).
#
#     bash bench/real_images.sh [--budget SECONDS] [--data DIR] [--detectors ...] [key.sub=value ...]
#
# (`--out` is $RUNS here.)
#
# Without a GPU (CI, at a tiny budget) nothing is built: the installed build runs the same code on the CPU.
# The data (default ../shared/data/tinyperson-rpi640, 61 MiB without labels.cache) travels to a device
# machine only when it is inside the repository: copy it into an ignored folder and name it in `carry`.
set -uo pipefail
source "$(dirname "$0")/device_env.sh"  # cd to the repository, $out, the .whl/ packages, stage()
python="${PYTHON:-python3}"

if "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"
  stage build 300 "$python" setup.py build_ext --inplace || { tail -n 60 "$out/build.log"; exit 1; }
  "$python" -c "import tinyfast; assert tinyfast.ops.cuda_available_in_build(), 'CUDA kernels not built'" || exit 1
else
  echo "no GPU: the installed build of the ops runs on the CPU"
fi

runs="${RUNS:-$(mktemp -d)}"  # the run folders, converted labels and the table
begin=$(date +%s)
"$python" -m bench.real_images --budget 70 "$@" --out "$runs" 2>&1 | tee "$out/real_images.log"
rc=${PIPESTATUS[0]}
cp "$runs/real_images.md" "$runs/real_images.json" "$out/" 2>/dev/null
echo "== real_images: rc $rc, $(($(date +%s) - begin)) s"
exit "$rc"
