#!/usr/bin/env bash
# Every benchmark in benchmarks/ at its full settings, one after another, each under the caching allocator darkroom
# uses (python -m experiments.allocator exec --), the load average printed before each; results go to
# benchmarks/results/<name>.json (the harness layout: environment, load, settings, comparisons with ratios).
#
#   benchmarks/run_all.sh                 # refuses to start when the 1-minute load average is above 1.5
#   benchmarks/run_all.sh --force         # start anyway (the figures then carry the load they ran under)
#   benchmarks/run_all.sh --quick         # every benchmark's --quick mode, JSON to a temporary folder (printed);
#                                         # no load check (quick figures are a smoke test, not results)
#   benchmarks/run_all.sh --only zero_dce_speed niqe_speed   # a subset (names as below)
#
# Environment: PY (default .venv/bin/python, else python3), REFUSION_BEFORE_REV (the "before" revision of
# refusion_speed, default b46faf2: lightning_modules/refusion.py before the issue-13 speed-up), MAX_LOAD (1.5).
# A benchmark that fails is reported and the others still run; the exit status is 1 if any failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
if [[ -z "${PY:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
REFUSION_BEFORE_REV=${REFUSION_BEFORE_REV:-b46faf2}
MAX_LOAD=${MAX_LOAD:-1.5}
export WANDB_MODE=${WANDB_MODE:-offline} NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1

force=0
quick=0
only=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) force=1 ;;
    --quick) quick=1 ;;
    --only) shift; while [[ $# -gt 0 && "$1" != --* ]]; do only+=("$1"); shift; done; continue ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# name | script | full-run arguments | quick-run arguments (besides --quick --out)
BENCHMARKS=(
  "zero_dce_speed|zero_dce_speed.py||"
  "zero_dce_pp_speed|zero_dce_speed.py|--variant zero_dce_pp --no-compile-train|--variant zero_dce_pp"
  "deepfuse_speed|deepfuse_speed.py||"
  "dped_speed|dped_speed.py||"
  "refusion_speed|refusion_speed.py|--before-rev $REFUSION_BEFORE_REV|--before-rev $REFUSION_BEFORE_REV"
  "mef_ssim_speed|mef_ssim_speed.py|--threads 1 2|"
  "niqe_speed|niqe_speed.py||"
  "fusion_metrics_speed|fusion_metrics_speed.py||"
  "dped_alignment_speed|dped_alignment_speed.py|--pairs 12|"
  "test_speed|test_speed.py||"
  "workflow_speed|workflow_speed.py||"
  "predict_memory|predict_memory.py|--per-pixel|"
  "allocator_speed|allocator_speed.py||"
  "inference_options|inference_options.py||"
)

names=()
for entry in "${BENCHMARKS[@]}"; do names+=("${entry%%|*}"); done
for name in "${only[@]}"; do
  if [[ ! " ${names[*]} " == *" $name "* ]]; then
    echo "run_all.sh: no benchmark named $name (one of: ${names[*]})" >&2
    exit 2
  fi
done

load1() { cut -d' ' -f1 /proc/loadavg; }
load3() { cut -d' ' -f1-3 /proc/loadavg; }

if [[ $quick -eq 0 && $force -eq 0 ]] && awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l > m) }'; then
  echo "run_all.sh: 1-minute load average $(load1) is above $MAX_LOAD; not starting (wait for an idle machine, or --force)" >&2
  exit 1
fi

if [[ $quick -eq 1 ]]; then
  outdir=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-bench-quick.XXXXXX")
  echo "quick mode: JSON goes to $outdir"
else
  outdir=benchmarks/results
fi

failed=()
start=$(date +%s)
for entry in "${BENCHMARKS[@]}"; do
  IFS='|' read -r name script full_args quick_args <<<"$entry"
  if [[ ${#only[@]} -gt 0 && ! " ${only[*]} " == *" $name "* ]]; then continue; fi
  if [[ $quick -eq 1 ]]; then
    # shellcheck disable=SC2206  # the argument lists are plain words
    args=(--quick $quick_args --out "$outdir/$name.json")
  else
    # shellcheck disable=SC2206
    args=($full_args --out "$outdir/$name.json")
  fi
  echo
  echo "== $name: load average $(load3) ($(date +%H:%M:%S)): benchmarks/$script ${args[*]}"
  t0=$(date +%s)
  if "$PY" -m experiments.allocator exec -- "$PY" "benchmarks/$script" "${args[@]}"; then
    echo "== $name: done in $(( $(date +%s) - t0 )) s"
  else
    echo "== $name: FAILED (exit $?) after $(( $(date +%s) - t0 )) s" >&2
    failed+=("$name")
  fi
done

echo
echo "all done in $(( $(date +%s) - start )) s, load average now $(load3); results in $outdir"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
