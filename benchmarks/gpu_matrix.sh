#!/usr/bin/env bash
# The GPU benchmark matrix of BUILD.md: every configuration in float32, bfloat16, float16 and
# with XLA, one process each; prints one summary line per run (and keeps the full logs).
#   bash benchmarks/gpu_matrix.sh [output_dir]
set -u
out=${1:-runs/gpu_matrix}
mkdir -p "$out"
cd "$(dirname "$0")/.."
for config in omniglot sparse_maml_mini resnet12_5shot; do
  for variant in float32 bfloat16 float16 xla; do
    case $variant in
      float32) extra="" ;;
      xla) extra="--jit_compile" ;;
      *) extra="--mixed_precision=$variant" ;;
    esac
    log="$out/$config-$variant.log"
    python benchmarks/meta_step.py --config=$config --repeats=5 $extra \
      --json_out="$out/$config-$variant.json" > "$log" 2>&1
    echo "$config $variant: $(grep -E '^median_s_per_meta_step|GPU utilisation' "$log" | tr '\n' ' ')"
  done
done
python benchmarks/memory.py > "$out/memory.log" 2>&1
echo "memory (peak over baseline vs inner steps, recompute on/off):"
grep -E '^\|' "$out/memory.log"
