#!/usr/bin/env bash
# The main job as a person runs it: prepare this checkout, then start AIOS with its demo
# site — the demo video as a camera, a simulated PLC (Modbus TCP on 127.0.0.1:5020, or
# AIOS_DEMO_PLC_PORT) and simulated sensors on a local connector, and the intrusion
# pipeline playing on them. Open the URL it prints and sign in as admin with the printed
# password (shown at the first start only). Runs until Ctrl-C; starting it again reuses
# everything in the data folder (AIOS_DATA_DIR, default ./data).
#
# Options are those of `aios up` (e.g. --port 8081, --data-dir /tmp/aios-demo).
# The same pipeline as a batch run over the video, without the service:
#   aios run examples/pipelines/intrusion.json --events out/events.jsonl  (see README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/aios up --demo "$@"
