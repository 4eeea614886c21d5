#!/usr/bin/env bash
# On a machine with a GPU: install the CUDA build of jax (the [cuda] extra) and PyTorch if
# they are missing, then run every benchmark once, small enough to finish in about 8
# minutes, printing one table per benchmark. Both frameworks run on the same GPU.
#
#   bash benchmarks/accelerator_check.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python - <<'PY' || pip install -q -e '.[cuda,dev,bench]'
import jax, sys
sys.exit(0 if jax.default_backend() == "gpu" else 1)
PY
python -c "import torch" 2>/dev/null || pip install -q -e '.[bench]'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())"

section() { echo; echo "## $1"; }
section "Sketch-RNN train step (JAX vs PyTorch)"
timeout 180 python benchmarks/sketch_rnn_step.py --sizes small,full --cells lstm,layer_norm --repeats 5 || echo "(sketch_rnn_step: failed or timed out)"
section "GAN train steps (JAX vs PyTorch)"
timeout 240 python benchmarks/gan_step.py --repeats 5 || echo "(gan_step: failed or timed out)"
section "Explorer response times"
if [ -d runs/stylegan ]; then
  timeout 60 python benchmarks/explore_latency.py --workdir runs/stylegan --stylegan64 --repeats 10 || true
else
  timeout 60 python benchmarks/explore_latency.py --stylegan64 --repeats 10 || true
fi
