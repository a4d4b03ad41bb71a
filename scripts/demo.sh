#!/usr/bin/env bash
# The main job on the embedded defaults: watch a restricted zone in real footage.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
rm -rf out/events.jsonl out/media out/intrusion.mp4
mkdir -p out
.venv/bin/aios run examples/pipelines/intrusion.json \
  --events out/events.jsonl --annotated out/intrusion.mp4 "$@"
echo "events: out/events.jsonl   snapshots and clips: out/media/   annotated video: out/intrusion.mp4"
