#!/usr/bin/env bash
# Prepare this checkout: Python environment from the lock file, detection model, demo video.
# Usage: scripts/setup.sh [--dev]   (--dev adds test tools and the system packages tests use)
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_ready=0
apt_update_once() {
  if [[ $apt_ready -eq 0 ]]; then
    log "Refreshing the Debian package lists"
    as_root apt-get update -qq
    apt_ready=1
  fi
}

# Demo video and test photos come from Debian packages (apt-get download needs package lists).
policy=$(apt-cache policy opencv-doc darknet 2>/dev/null || true)
if [[ $(grep -c 'Candidate: [0-9]' <<<"$policy") -lt 2 ]]; then
  apt_update_once
fi

if [[ $DEV -eq 1 ]]; then
  # GStreamer's RTSP server is the real RTSP peer of the camera tests; Mosquitto is the
  # MQTT 5 broker of the ingestion and connector tests (started by the tests themselves);
  # Chromium is the browser Playwright drives in the console's end-to-end tests; make runs
  # the Lambda layer's build in `sam build`.
  SYSTEM_PACKAGES=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly gstreamer1.0-libav mosquitto chromium make)
  missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    apt_update_once
    log "Installing system packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# uv reads uv.lock. Use the one on PATH, else install it into a private tool environment
# (a system Python may refuse pip installs: PEP 668).
UV=$(command -v uv || true)
if [[ -z "$UV" ]]; then
  UV=.tools/uv/bin/uv
  if [[ ! -x "$UV" ]]; then
    log "Installing uv (the Python package manager that reads uv.lock) into .tools/uv"
    if ! python3 -m venv .tools/uv >/dev/null 2>&1; then
      rm -rf .tools/uv
      apt_update_once
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .tools/uv
    fi
    .tools/uv/bin/python -m pip install --quiet --disable-pip-version-check uv
  fi
fi

export UV_PYTHON_DOWNLOADS=never
EXTRAS=(--extra vision --extra connector --extra cloud)
[[ $DEV -eq 1 ]] && EXTRAS+=(--extra dev)
log "Creating .venv from uv.lock"
"$UV" sync --frozen --quiet "${EXTRAS[@]}"

# AWS SAM CLI (the template's `sam validate --lint` and `sam build` in the tests, and
# scripts/deploy.sh) in its own environment: its pinned dependencies would fight the project's.
if [[ $DEV -eq 1 ]] && ! .tools/sam/bin/sam --version >/dev/null 2>&1; then
  log "Installing the AWS SAM CLI into .tools/sam"
  rm -rf .tools/sam
  "$UV" venv --quiet .tools/sam
  "$UV" pip install --quiet --python .tools/sam/bin/python "aws-sam-cli>=1.130"
fi

log "Fetching the default detection model and the demo assets"
.venv/bin/aios models fetch >/dev/null
.venv/bin/aios assets fetch >/dev/null

# The web console (web/, React + Vite): npm packages from package-lock.json, then the build
# that `aios up` serves at /.
if ! command -v npm >/dev/null 2>&1; then
  log "npm is missing: install Node.js 20 (Debian: apt-get install nodejs npm)"
  exit 1
fi
if [[ ! -d web/node_modules ]] || [[ web/package-lock.json -nt web/node_modules/.package-lock.json ]]; then
  log "Installing the console's npm packages"
  # `npm install` (which keeps to package-lock.json) rather than `npm ci`: the lock lacks
  # Vite's Windows-only optional package, which some registries do not carry, and `npm ci`
  # refuses a lock without it.
  npm --prefix web install --no-audit --no-fund --loglevel=error >/dev/null
fi
log "Building the console (web/dist)"
if ! build_log=$(npm --prefix web run build 2>&1); then
  printf '%s\n' "$build_log" >&2
  exit 1
fi
