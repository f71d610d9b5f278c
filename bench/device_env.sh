# Sourced by the device scripts (bench/gpu_check.sh, bench/real_images.sh): the repository root as the
# working folder, $out for what comes back ($OUT, or a tmp dir), unbuffered Python, the Python packages that
# travel as wheels in .whl/ (see /work/.library/device/README.md) installed into a temporary folder, and
# `stage NAME SECONDS COMMAND...`: COMMAND with a time limit, logged to $out/NAME.log.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-$(mktemp -d)}"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

stage() {  # stage NAME SECONDS COMMAND...: runs COMMAND with a time limit, logs to $out/NAME.log
  local name=$1 limit=$2 begin rc
  shift 2
  begin=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "== $name: rc $rc, $(($(date +%s) - begin)) s (limit $limit s)"
  return $rc
}
