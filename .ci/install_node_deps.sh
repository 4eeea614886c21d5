#!/usr/bin/env bash
# CI: install the test-only node packages of tests/node (magenta's @magenta/sketch
# client and its @tensorflow/tfjs 1.x dependency, pinned by package-lock.json), so
# tests/test_sketch_rnn_magenta.py can check exported models against the real
# sketch-rnn-js runtime. Pure JavaScript (tfjs CPU backend), no native builds.
# Needs node >= 16 and npm. Installs into tests/node/node_modules (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../tests/node"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "ci: node and npm are needed for the sketch-rnn-js interop test (tests/node)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 16 ]; then
  echo "ci: node >= 16 needed for tests/node, found $(node --version)" >&2
  exit 1
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
node -e 'require("@magenta/sketch"); console.log("ci: @magenta/sketch " + require("@magenta/sketch/package.json").version + " installed in tests/node")' 2>/dev/null
