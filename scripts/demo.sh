#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what is needed, build, build the guest image,
# then run the demo (every tool, the isolation, timings) on each backend that works here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm ci --no-audit --no-fund
npm run build
node dist/cli/main.cjs image build
node dist/cli/main.cjs doctor || true
node dist/cli/main.cjs demo "$@"
