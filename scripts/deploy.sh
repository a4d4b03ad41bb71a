#!/usr/bin/env bash
# Deploy AIOS to an AWS account: build and deploy template.yaml (AWS SAM), upload the web
# console, create the first admin account and provision the first connector.
#
# Usage: scripts/deploy.sh [--stage dev] [--name-prefix aios] [--region REGION] [--guided]
#                          [--connector ID [--camera CAM]...] [--skip-console]
#
#   --stage          deployment stage (default dev): stack <name-prefix>-<stage>
#   --guided         ask for the stack's parameters again (always the first time of a stage;
#                    the answers are kept in samconfig.toml under [<stage>])
#   --connector ID   provision connector ID on IoT Core (thing, certificate, policy) and write
#                    its files to out/connectors/ID (idempotent: safe to run again)
#   --camera CAM     a camera of that connector: create its Kinesis video stream (repeat)
#   --skip-console   do not upload web/dist
#
# Needs: the AWS CLI v2 with credentials for the target account, the AWS SAM CLI
# (scripts/setup.sh --dev installs it into .tools/sam), uv, make, and the project's .venv
# (scripts/setup.sh). No container engine is needed to build.
set -euo pipefail
cd "$(dirname "$0")/.."

STAGE=dev
PREFIX=aios
GUIDED=0
CONNECTOR=""
CAMERAS=()
SKIP_CONSOLE=0

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'error: %s (see --help)\n' "$*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) STAGE=${2:?--stage needs a value}; shift 2 ;;
    --name-prefix) PREFIX=${2:?--name-prefix needs a value}; shift 2 ;;
    --region) export AWS_REGION=${2:?--region needs a value} AWS_DEFAULT_REGION=$2; shift 2 ;;
    --guided) GUIDED=1; shift ;;
    --connector) CONNECTOR=${2:?--connector needs a value}; shift 2 ;;
    --camera) CAMERAS+=("${2:?--camera needs a value}"); shift 2 ;;
    --skip-console) SKIP_CONSOLE=1; shift ;;
    # the comment block at the top of this file, without its '#'
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) usage_error "unknown option $1" ;;
  esac
done
# ${CAMERAS[@]+...}: an empty array is "unbound" under set -u before bash 4.4
if [[ -n ${CAMERAS[*]+x} && -z $CONNECTOR ]]; then
  usage_error "--camera needs --connector ID (the connector the cameras are behind)"
fi
[[ $STAGE =~ ^[a-z][a-z0-9]{0,11}$ ]] || die "--stage must be lower-case letters and digits (≤ 12)"
[[ $PREFIX =~ ^[a-z][a-z0-9]{0,11}$ ]] || die "--name-prefix must be lower-case letters and digits (≤ 12)"
STACK="$PREFIX-$STAGE"

# ---- tools
SAM=.tools/sam/bin/sam
[[ -x $SAM ]] || SAM=$(command -v sam || true)
[[ -n $SAM ]] || die "the AWS SAM CLI is missing: run scripts/setup.sh --dev"
command -v aws >/dev/null || die "the AWS CLI v2 is missing (https://docs.aws.amazon.com/cli/)"
command -v uv >/dev/null || [[ -x .tools/uv/bin/uv ]] || die "uv is missing: run scripts/setup.sh"
[[ -x .tools/uv/bin/uv ]] && export PATH="$PWD/.tools/uv/bin:$PATH"
command -v make >/dev/null || die "make is missing (Debian: apt-get install make)"
[[ -x .venv/bin/python ]] || die ".venv is missing: run scripts/setup.sh"
export SAM_CLI_TELEMETRY=${SAM_CLI_TELEMETRY:-0}

ACCOUNT=$(aws sts get-caller-identity --query Account --output text) ||
  die "no AWS credentials (aws configure, or AWS_PROFILE)"
log "Deploying stack $STACK to account $ACCOUNT${AWS_REGION:+ in $AWS_REGION}"

# ---- build and deploy
log "Building (sam build: Lambda layers from uv.lock, no container)"
"$SAM" build --template template.yaml

if [[ $GUIDED -eq 1 ]] || ! grep -q "^\[$STAGE\.deploy\.parameters\]" samconfig.toml; then
  log "Deploying (guided: answers are saved in samconfig.toml [$STAGE])"
  "$SAM" deploy --guided --config-env "$STAGE" --stack-name "$STACK" \
    --capabilities CAPABILITY_IAM \
    --parameter-overrides "Stage=$STAGE NamePrefix=$PREFIX"
else
  log "Deploying (samconfig.toml [$STAGE])"
  "$SAM" deploy --config-env "$STAGE" --no-fail-on-empty-changeset
fi

# The stack's region: --region / AWS_REGION, else the one the guided deployment saved.
if [[ -z ${AWS_REGION:-} ]]; then
  REGION=$(sed -n "/^\[$STAGE\.deploy\.parameters\]/,/^\[/s/^region = \"\(.*\)\"/\1/p" samconfig.toml | head -n 1)
  [[ -n $REGION ]] && export AWS_REGION=$REGION AWS_DEFAULT_REGION=$REGION
fi

output() {
  aws cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
CONSOLE_BUCKET=$(output ConsoleBucketName)
DISTRIBUTION=$(output ConsoleDistributionId)
CONSOLE_URL=$(output ConsoleUrl)
TABLE=$(output DataTableName)
POLICY_NAME=$(output ConnectorPolicyName)
ROLE_ALIAS=$(output KvsRoleAlias)

# ---- console
if [[ $SKIP_CONSOLE -eq 0 ]]; then
  if [[ ! -f web/dist/index.html ]]; then
    command -v npm >/dev/null || die "web/dist is missing and npm is not installed (Node.js 20)"
    log "Building the console (web/dist)"
    npm --prefix web install --no-audit --no-fund --loglevel=error >/dev/null
    npm --prefix web run build >/dev/null
  fi
  log "Uploading the console to s3://$CONSOLE_BUCKET"
  # Vite's assets/ have content hashes in their names: cached for a year. The rest
  # (index.html, icons) is revalidated on every load, so a deployment shows at once.
  if [[ -d web/dist/assets ]]; then
    aws s3 sync web/dist/assets "s3://$CONSOLE_BUCKET/assets" --delete --only-show-errors \
      --cache-control "public,max-age=31536000,immutable"
  fi
  aws s3 sync web/dist "s3://$CONSOLE_BUCKET" --delete --only-show-errors \
    --exclude "assets/*" --cache-control "no-cache"
  aws cloudfront create-invalidation --distribution-id "$DISTRIBUTION" --paths "/*" \
    --query Invalidation.Id --output text >/dev/null
fi

# ---- first admin account (only when the table has no user yet)
log "Creating the first admin account if there is none"
# `aios users first-admin` changes nothing (exit 1, says so) when accounts exist already.
PASSWORD=""
ERRORS=$(mktemp)
trap 'rm -f "$ERRORS"' EXIT
if OUTPUT=$(.venv/bin/aios users first-admin --database-url "dynamodb://$TABLE" 2>"$ERRORS"); then
  PASSWORD=$(sed -n 's/^password: //p' <<<"$OUTPUT")
elif ! grep -q "has accounts already" "$ERRORS"; then
  cat "$ERRORS" >&2
  die "could not create the first admin account in $TABLE"
fi
if [[ -n $PASSWORD ]]; then
  printf '\nFirst admin account: user "admin", password %s\n' "$PASSWORD"
  printf 'It is shown only now: sign in at %s and change it.\n\n' "$CONSOLE_URL"
else
  log "Users exist already: no account created"
fi

# ---- first connector
if [[ -n $CONNECTOR ]]; then
  log "Provisioning connector $CONNECTOR (files in out/connectors/$CONNECTOR)"
  args=(provision-connector "$CONNECTOR" --out "out/connectors/$CONNECTOR"
    --policy-name "$POLICY_NAME" --role-alias "$ROLE_ALIAS"
    --stage "$STAGE" --name-prefix "$PREFIX")
  [[ -n ${AWS_REGION:-} ]] && args+=(--region "$AWS_REGION")
  for camera in ${CAMERAS[@]+"${CAMERAS[@]}"}; do args+=(--camera "$camera"); done
  .venv/bin/aios cloud "${args[@]}"
fi

log "Done"
printf 'Console: %s\nAPI:     %s\nIoT:     %s\n' "$CONSOLE_URL" "$(output ApiUrl)" "$(output IotEndpoint)"
