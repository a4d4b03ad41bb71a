#!/usr/bin/env bash
# The main job on the embedded defaults: watch a restricted zone in real footage, and
# raise alarms — the siren coil pulses on a simulated PLC; WhatsApp, Telegram and email
# report "not configured" until their credentials are set (AIOS_SECRET_<NAME>).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
rm -rf out/events.jsonl out/executions.jsonl out/media out/intrusion.mp4 out/plc.log
mkdir -p out
# The example's siren is coil 0 of a Modbus TCP PLC on 127.0.0.1:5020: simulate it.
.venv/bin/aios sim plc --port 5020 >out/plc.log 2>&1 &
plc=$!
trap 'kill $plc 2>/dev/null || true' EXIT
sleep 1
.venv/bin/aios run examples/pipelines/intrusion.json \
  --events out/events.jsonl --annotated out/intrusion.mp4 "$@"
sleep 1
echo "siren on the simulated PLC:"
sed 's/^/  /' out/plc.log
echo "events: out/events.jsonl   executions: out/executions.jsonl"
echo "snapshots and clips: out/media/   annotated video: out/intrusion.mp4"
