#!/usr/bin/env bash
# On a machine with a GPU: run every benchmark once, small enough to finish in about 10
# minutes, printing one table per benchmark. Both frameworks run on the same GPU (the
# PyTorch references pick CUDA when they see it).
#
#   bash benchmarks/accelerator_check.sh            # from the repository root
#
# A python3 that already has a CUDA jax and torch (e.g. a prepared image) is used as it
# is, with the repository on PYTHONPATH; the zoo's other dependencies must be importable
# there (an offline machine can take them as wheels). Otherwise a .venv gets the CUDA
# builds (the [cuda] and [bench] extras).
set -euo pipefail
cd "$(dirname "$0")/.."
if python3 -c "import jax, torch, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  py=python3
else
  [ -d .venv ] || python3 -m venv .venv
  . .venv/bin/activate
  python - <<'PY' || pip install -q -e '.[cuda,dev,bench]'
import jax, sys
sys.exit(0 if jax.default_backend() == "gpu" else 1)
PY
  python -c "import torch" 2>/dev/null || pip install -q -e '.[bench]'
  py=python
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$py -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())"

section() { echo; echo "## $1"; }
section "Sketch-RNN train step (JAX vs PyTorch)"
timeout 180 $py benchmarks/sketch_rnn_step.py --sizes small,full --cells lstm,layer_norm --repeats 5 || echo "(sketch_rnn_step: failed or timed out)"
section "GAN train steps (JAX vs PyTorch)"
# pix2pix at 256x256 compiled for 168 s on an H200 (BENCHMARKS.md), so only its 64x64 row here.
timeout 300 $py benchmarks/gan_step.py --families dcgan_cls,progan,stylegan,t2f,pix2pix --pix2pix 64x8 --repeats 5 || echo "(gan_step: failed or timed out)"
section "Explorer response times"
if [ -d runs/stylegan ]; then
  timeout 60 $py benchmarks/explore_latency.py --workdir runs/stylegan --stylegan64 --repeats 10 || true
else
  timeout 60 $py benchmarks/explore_latency.py --stylegan64 --repeats 10 || true
fi
