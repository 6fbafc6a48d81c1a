#!/usr/bin/env bash
# Start one experiment on a RunPod pod, and carry on after a restart: clone (or update) the experiment
# branch on the network volume, install the pinned environment once per pyproject.toml, then hand over
# to the harness's supervisor (`python -m training.pod run`): preflight, training with `--resume auto`,
# and with AUTO_STOP=1 stopping the pod when training ends. This script is only what must run before
# that Python exists; `launch` embeds it in the pod's start command.
#
#   GIT_REPO=https://github.com/acme/well-log-ocr GIT_BRANCH=exp/r32 \
#   CONFIG_PATH=configs/experiments/r32.py AUTO_STOP=1 bash scripts/setup_pod.sh
#
# Anywhere else, with the Python on PATH and a scratch directory as the volume:
#
#   GIT_REPO=$PWD GIT_BRANCH=$(git branch --show-current) CONFIG_PATH=configs/experiments/quick_val.py \
#   VOLUME_PATH=/tmp/volume SKIP_INSTALL=1 bash scripts/setup_pod.sh
#
# Environment: GIT_REPO, GIT_BRANCH, CONFIG_PATH (required); GIT_COMMIT (train exactly this commit of
# the branch, at every start; unset: the branch head); WANDB_API_KEY, HF_TOKEN, GIT_TOKEN
# (secrets: passed on, never printed or written); GIT_USERNAME (x-access-token) goes with GIT_TOKEN;
# VOLUME_PATH (default: the first of VOLUME_SEARCH="/runpod_volume /workspace" that exists);
# SKIP_INSTALL=1 (use the Python on PATH, install nothing); AUTO_STOP=1;
# SMOKE=1 (the supervisor runs python -m training.pod.smoke on the config instead of training: launch --smoke);
# RETRY_WAIT_SECONDS (2: clone/fetch and network calls are tried 3 times, waiting 2 s then 4 s);
# GIT_STALL_SECONDS (60: a clone/fetch moving under 1 kB/s that long is abandoned and retried);
# MAX_LIFETIME_S, IDLE_STOP_S, IDLE_POLL_S (60): the dead-man switch (start_deadman).
# RunPod sets RUNPOD_POD_ID, RUNPOD_API_KEY and RUNPOD_GPU_COUNT, and on every node of an Instant
# Cluster NUM_NODES, NODE_RANK, MASTER_ADDR/PRIMARY_ADDR, MASTER_PORT/PRIMARY_PORT and NUM_TRAINERS:
# then each node runs this script and torchrun joins them. scripts/README.md has the pod setup.
#
# Exit codes: train.py's, through the supervisor (0 done, 2 bad config or failed preflight, 3 budget
# cap, 4 output dir locked, 143 stopped by SIGTERM/SIGINT after a checkpoint); 2 also for a bad
# environment (missing variable, unknown branch or repository); 1 when setup failed (the network
# after 3 tries, the install).
#
# Safe to re-run at any point. The whole script is one function, read before it runs, so updating
# the clone it may have been started from cannot change it mid-run.

# training/errors.py is the home of the exit codes, training/retry.py of the retry policy and
# training/redaction.py of the secrets' names; these copies are needed before Python is installed,
# and tests/pod/test_setup_pod.py checks them against those.
SECRET_VARIABLES="WANDB_API_KEY HF_TOKEN GIT_TOKEN RUNPOD_API_KEY"
EXIT_SETUP_FAILED=1
EXIT_USER_ERROR=2
EXIT_PREEMPTED=143
RETRY_ATTEMPTS=3
RETRY_DEFAULT_WAIT_SECONDS=2
RETRY_MAX_WAIT_SECONDS=60

# The exit path (on_exit, on_signal and what they call) runs from traps, which shellcheck does not follow.
# shellcheck disable=SC2329
set -euo pipefail

main() {
  strip_repo_credentials  # first: before anything can print or trace GIT_REPO
  GIT_REPO="${GIT_REPO:-}"
  GIT_BRANCH="${GIT_BRANCH:-}"
  GIT_COMMIT="${GIT_COMMIT:-}"
  CONFIG_PATH="${CONFIG_PATH:-}"
  GIT_USERNAME="${GIT_USERNAME:-x-access-token}"
  VOLUME_PATH="${VOLUME_PATH:-}"
  VOLUME_SEARCH="${VOLUME_SEARCH:-/runpod_volume /workspace}"
  SKIP_INSTALL="${SKIP_INSTALL:-0}"
  AUTO_STOP="${AUTO_STOP:-0}"
  SMOKE="${SMOKE:-0}"
  RETRY_WAIT_SECONDS="${RETRY_WAIT_SECONDS:-$RETRY_DEFAULT_WAIT_SECONDS}"
  GIT_STALL_SECONDS="${GIT_STALL_SECONDS:-60}"
  RUNPOD_POD_ID="${RUNPOD_POD_ID:-}"
  RUNPOD_GPU_COUNT="${RUNPOD_GPU_COUNT:-}"
  IDLE_POLL_S="${IDLE_POLL_S:-60}"
  # The idle clock of the dead-man switch starts when this appears: train.py creates it as it starts
  # training (training/pod/commands.py), after the install, the downloads and the model's load.
  export TRAINING_STARTED_FILE="${TMPDIR:-/tmp}/harness-training-started-$$"
  rm -f "$TRAINING_STARTED_FILE"
  # Secrets are only ever tested with ${VAR:+set}: expanding them would put them in `bash -x` output.

  PY=""               # the Python that runs the harness, once known
  REPO_DIR=""
  LOG_FILE=""
  LOG_PID=""
  ASKPASS_DIR=""
  SLEEP_PID=""        # set while parked
  STOP_SIGNAL=""      # this script was asked to stop (preemption, Ctrl-C)
  # A pod bills from its start: the cost ledger counts from here, not from the first step (training.cost).
  export POD_STARTED_AT="${POD_STARTED_AT:-$(date +%s)}"
  trap on_exit EXIT
  trap 'on_signal TERM' TERM
  trap 'on_signal INT' INT
  trap 'on_signal HUP' HUP

  start_deadman  # first: whatever hangs after it (a volume, a clone, an install) is bounded by it
  find_volume
  check_volume
  start_log
  check_environment
  [ "$CREDENTIALS_STRIPPED" = 0 ] || say "GIT_REPO carried credentials: removed from the URL; git gets them" \
    "through GIT_ASKPASS (as GIT_TOKEN), and they are never printed or written"
  say "experiment branch $GIT_BRANCH of $GIT_REPO, config $CONFIG_PATH, volume $VOLUME_PATH" \
      "(pod ${RUNPOD_POD_ID:-none}, GPUs ${RUNPOD_GPU_COUNT:-?})"
  setup_git_auth
  sync_repo
  cd "$REPO_DIR"
  setup_python
  export VOLUME_PATH PYTHONUNBUFFERED=1
  # Downloaded weights and the stand-in model survive restarts on the volume.
  export HF_HOME="${HF_HOME:-$VOLUME_PATH/cache/huggingface}"
  export WELL_LOG_CACHE="${WELL_LOG_CACHE:-$VOLUME_PATH/cache/well-log-harness}"
  use_unsloth_cache
  export RETRY_WAIT_SECONDS
  hand_over
}

hand_over() {
  # The clone is in place: git's credentials are not needed again.
  [ -z "$ASKPASS_DIR" ] || rm -rf "$ASKPASS_DIR"
  unset GIT_ASKPASS
  # exec: the supervisor becomes this process, the one RunPod signals, and its exit code the pod's.
  # It writes through the same log pipe and lets the log writer (LOG_PID) drain before it ends.
  trap - EXIT TERM INT HUP
  export POD_LOG_FILE="$LOG_FILE" POD_LOG_PID="$LOG_PID"
  say "setup done: $PY -m training.pod run (preflight, training, then the pod's end)"
  exec "$PY" -m training.pod run
}

strip_repo_credentials() {
  # https://user:token@host/...: git would print the URL and write it to .git/config. The
  # credentials move to GIT_USERNAME/GIT_TOKEN (given to git by GIT_ASKPASS, masked in every
  # line printed) and GIT_REPO keeps the URL without them, for this script and its children.
  # xtrace is off meanwhile: `bash -x` would otherwise show the token.
  { local trace=${-//[^x]/}; set +x; } 2>/dev/null
  CREDENTIALS_STRIPPED=0
  if [[ "${GIT_REPO:-}" =~ ^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@]+)@(.*)$ ]]; then
    local userinfo="${BASH_REMATCH[2]}" user token
    GIT_REPO="${BASH_REMATCH[1]}${BASH_REMATCH[3]}"
    if [[ "$userinfo" == *:* ]]; then user="${userinfo%%:*}" token="${userinfo#*:}"; else user="" token="$userinfo"; fi
    printf -v token '%b' "${token//%/\\x}"  # the URL's percent-encoding, as git would decode it
    if [ -z "${GIT_TOKEN:+set}" ]; then
      GIT_TOKEN="$token"
      [ -z "$user" ] || GIT_USERNAME="$user"
      export GIT_TOKEN GIT_USERNAME
    fi
    export GIT_REPO
    CREDENTIALS_STRIPPED=1
  fi
  [ -z "$trace" ] || set -x
}

say() { printf '[setup_pod %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

die() {  # die CODE MESSAGE...
  local code=$1
  shift
  say "error: $*" >&2
  exit "$code"
}

find_volume() {
  # launch mounts the volume at /runpod_volume and says so in VOLUME_PATH; a pod made by hand has it
  # where RunPod puts it by default, /workspace. Without VOLUME_PATH: the first of VOLUME_SEARCH there.
  [ -z "$VOLUME_PATH" ] || return 0
  local candidate
  for candidate in $VOLUME_SEARCH; do
    if [ -d "$candidate" ]; then
      VOLUME_PATH="$candidate"
      return 0
    fi
  done
  die "$EXIT_USER_ERROR" "no volume at any of: $VOLUME_SEARCH: attach the network volume (or set VOLUME_PATH to where it is mounted);" \
    "checkpoints must not go to the container disk"
}

check_volume() {
  [ -d "$VOLUME_PATH" ] || die "$EXIT_USER_ERROR" "VOLUME_PATH=$VOLUME_PATH does not exist: attach the network volume with" \
    "that mount path (or set VOLUME_PATH to where it is mounted); checkpoints must not go to the container disk"
  VOLUME_PATH="$(cd "$VOLUME_PATH" && pwd)"
  mkdir -p "$VOLUME_PATH/logs" 2>/dev/null || die "$EXIT_USER_ERROR" "VOLUME_PATH=$VOLUME_PATH is not writable"
}

start_log() {
  LOG_FILE="$VOLUME_PATH/logs/training-$(date -u +%Y%m%dT%H%M%SZ)$(node_suffix).log"
  # Everything from here on goes through mask_secrets to the terminal and the log. Both ignore
  # INT/TERM so the trainer's last lines (the checkpoint it saved) still arrive after a Ctrl-C.
  exec > >(trap '' INT TERM HUP; mask_secrets | tee -a "$LOG_FILE") 2>&1
  LOG_PID=$!
  say "log: $LOG_FILE"
}

mask_secrets() {
  # A second line of defence behind code that never prints them: any secret that does show up in
  # some library's output is replaced by ***. awk reads them from its environment, not from argv.
  local awk=(awk)
  # mawk (Debian's awk) reads its input in blocks unless told otherwise: lines would arrive late.
  if awk -W version 2>/dev/null | grep -q mawk; then awk=(awk -W interactive); fi
  # shellcheck disable=SC2016  # an awk program: its $0 is awk's
  "${awk[@]}" -v secret_names="$SECRET_VARIABLES" 'BEGIN {
         n = split(secret_names, names, " ")
         for (i = 1; i <= n; i++) if (length(ENVIRON[names[i]]) >= 6) secret[++m] = ENVIRON[names[i]]
       }
       {
         line = $0
         for (i = 1; i <= m; i++)
           while ((at = index(line, secret[i])) > 0)
             line = substr(line, 1, at - 1) "***" substr(line, at + length(secret[i]))
         print line
         fflush()
       }'
}

check_environment() {
  local name missing=()
  for name in GIT_REPO GIT_BRANCH CONFIG_PATH; do
    [ -n "${!name}" ] || missing+=("$name")
  done
  [ ${#missing[@]} -eq 0 ] || die "$EXIT_USER_ERROR" "${missing[*]} not set: set GIT_REPO (the repository URL), GIT_BRANCH" \
    "(the experiment branch) and CONFIG_PATH (e.g. configs/experiments/quick_val.py) in the pod's environment"
  git check-ref-format --branch "$GIT_BRANCH" >/dev/null 2>&1 \
    || die "$EXIT_USER_ERROR" "GIT_BRANCH=$GIT_BRANCH: not a valid branch name"
  [[ -z "$GIT_COMMIT" || "$GIT_COMMIT" =~ ^[0-9a-f]{7,40}$ ]] \
    || die "$EXIT_USER_ERROR" "GIT_COMMIT=$GIT_COMMIT: must be a commit id (7 to 40 hex digits), or unset to train" \
      "the branch head"
  if [[ "$CONFIG_PATH" == /* || "/$CONFIG_PATH/" == */../* ]]; then
    die "$EXIT_USER_ERROR" "CONFIG_PATH=$CONFIG_PATH: must be a path inside the repository, e.g. configs/experiments/quick_val.py"
  fi
  if ! [[ "$RETRY_WAIT_SECONDS" =~ ^[0-9]+([.][0-9]+)?$ ]] \
      || ! awk -v wait="$RETRY_WAIT_SECONDS" -v most="$RETRY_MAX_WAIT_SECONDS" 'BEGIN { exit !(wait <= most) }'; then
    die "$EXIT_USER_ERROR" "RETRY_WAIT_SECONDS=$RETRY_WAIT_SECONDS: must be a number of seconds between 0 and" \
      "$RETRY_MAX_WAIT_SECONDS (default $RETRY_DEFAULT_WAIT_SECONDS)"
  fi
  if [ -n "${GIT_TOKEN:+set}" ] && [[ "$GIT_REPO" =~ ^http:// ]] \
      && ! [[ "$GIT_REPO" =~ ^http://(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?/ ]]; then
    die "$EXIT_USER_ERROR" "GIT_REPO=$GIT_REPO: plain http would send GIT_TOKEN unencrypted; use the https:// URL"
  fi
  [[ "$GIT_STALL_SECONDS" =~ ^[1-9][0-9]*$ ]] \
    || die "$EXIT_USER_ERROR" "GIT_STALL_SECONDS=$GIT_STALL_SECONDS: must be a whole number of seconds >= 1 (default 60)"
  for name in SKIP_INSTALL AUTO_STOP SMOKE; do
    [[ "${!name}" =~ ^[01]?$ ]] || die "$EXIT_USER_ERROR" "$name=${!name}: must be 1 (on) or 0 (off)"
  done
  # One clone per branch: branches of one repository on one volume never share a working tree.
  REPO_DIR="$VOLUME_PATH/repo$(node_suffix)/$GIT_BRANCH"
}

setup_git_auth() {
  export GIT_TERMINAL_PROMPT=0  # fail at once instead of waiting for a password nobody will type
  [ -n "${GIT_TOKEN:+set}" ] || return 0
  # git asks GIT_ASKPASS for the username and password of an HTTPS remote; this helper answers from
  # the environment, so the token is in no argument, no file and no .git/config.
  ASKPASS_DIR="$(mktemp -d)"
  cat >"$ASKPASS_DIR/askpass" <<'EOF'
#!/bin/sh
case "$1" in
  Username*) printf '%s\n' "$GIT_USERNAME" ;;
  *) printf '%s\n' "$GIT_TOKEN" ;;
esac
EOF
  chmod 700 "$ASKPASS_DIR/askpass"
  export GIT_ASKPASS="$ASKPASS_DIR/askpass" GIT_USERNAME
  say "GIT_TOKEN is set: git authenticates with it (as $GIT_USERNAME) through GIT_ASKPASS"
}

# git's messages for failures that no retry can fix: a wrong URL, branch or token.
GIT_PERMANENT='not found|does not exist|does not appear to be a git repository|could not find remote|couldn.t find remote ref|authentication failed|invalid username or password|returned error: 40[0-4]|permission denied|could not read (username|password)|terminal prompts disabled'

git_retry() {  # git_retry WHAT GIT-ARGS...: RETRY_ATTEMPTS tries, exponential backoff, transient errors only
  local what=$1 attempt=1 rc errors delay
  shift
  errors="$(mktemp)"
  while :; do
    rc=0
    # No credential helper: none may store the token, wherever git's global config points. A
    # transfer slower than 1 kB/s for GIT_STALL_SECONDS is abandoned (and retried): a hung
    # remote must not keep a pod billing.
    git -c credential.helper= -c http.lowSpeedLimit=1000 -c "http.lowSpeedTime=$GIT_STALL_SECONDS" "$@" \
      2>"$errors" || rc=$?
    cat "$errors" >&2
    if [ "$rc" -eq 0 ]; then
      rm -f "$errors"
      return 0
    fi
    if grep -qiE "$GIT_PERMANENT" "$errors"; then
      rm -f "$errors"
      die "$EXIT_USER_ERROR" "$what failed (permanent error, not retried): check GIT_REPO=$GIT_REPO, GIT_BRANCH=$GIT_BRANCH" \
        "and, for a private repository, GIT_TOKEN"
    fi
    if [ "$attempt" -ge "$RETRY_ATTEMPTS" ]; then
      rm -f "$errors"
      die "$EXIT_SETUP_FAILED" "$what failed (transient error, gave up after $RETRY_ATTEMPTS tries): check the" \
        "network and GIT_REPO"
    fi
    delay="$(awk -v base="$RETRY_WAIT_SECONDS" -v n="$attempt" 'BEGIN { print base * 2 ^ (n - 1) }')"
    say "$what failed (try $attempt/$RETRY_ATTEMPTS, transient); retrying in ${delay}s"
    sleep "$delay"
    attempt=$((attempt + 1))
  done
}

sync_repo() {
  if [ -d "$REPO_DIR/.git" ]; then
    say "updating $REPO_DIR to the head of $GIT_BRANCH"
    # A pod killed mid-checkout leaves this lock; only this script works in this clone.
    rm -f "$REPO_DIR/.git/index.lock"
    git -C "$REPO_DIR" remote set-url origin "$GIT_REPO"
    git_retry "git fetch" -C "$REPO_DIR" fetch --quiet --prune origin \
      "+refs/heads/$GIT_BRANCH:refs/remotes/origin/$GIT_BRANCH"
    # Tracked files are reset; untracked ones are left alone (no `git clean`): they are what runs
    # wrote, and a restart must not delete any of it.
    git -C "$REPO_DIR" checkout --quiet --force -B "$GIT_BRANCH" "refs/remotes/origin/$GIT_BRANCH"
  else
    say "cloning $GIT_BRANCH of $GIT_REPO into $REPO_DIR"
    # Cloned beside and moved into place, so a clone cut short is never taken for a complete one.
    rm -rf "$REPO_DIR.partial"
    mkdir -p "$(dirname "$REPO_DIR")"
    git_retry "git clone" clone --quiet --single-branch --branch "$GIT_BRANCH" "$GIT_REPO" "$REPO_DIR.partial"
    mv "$REPO_DIR.partial" "$REPO_DIR"
  fi
  [ -z "$GIT_COMMIT" ] || pin_commit
  say "code: $GIT_BRANCH @ $(git -C "$REPO_DIR" rev-parse --short HEAD)"
}

pin_commit() {
  # The commit `launch` checked: every start, restarts included, trains exactly it, so a push after
  # the launch cannot change the code mid-experiment.
  local head commit
  head="$(git -C "$REPO_DIR" rev-parse HEAD)"
  if ! commit="$(git -C "$REPO_DIR" rev-parse --verify --quiet "$GIT_COMMIT^{commit}")"; then
    # Not in the branch's history any more (a force-push): ask for it by id.
    git_retry "git fetch $GIT_COMMIT" -C "$REPO_DIR" fetch --quiet origin "$GIT_COMMIT"
    commit="$(git -C "$REPO_DIR" rev-parse --verify --quiet "$GIT_COMMIT^{commit}")" \
      || die "$EXIT_USER_ERROR" "GIT_COMMIT=$GIT_COMMIT: not found in $GIT_REPO; launch the experiment again"
  fi
  if [ "$commit" != "$head" ]; then
    say "$GIT_BRANCH has moved on to $(git -C "$REPO_DIR" rev-parse --short "$head"); training stays on" \
        "GIT_COMMIT=$(git -C "$REPO_DIR" rev-parse --short "$commit") (launch a new experiment for the new code)"
  fi
  git -C "$REPO_DIR" checkout --quiet --force -B "$GIT_BRANCH" "$commit"
}

setup_python() {
  if [ "$SKIP_INSTALL" = 1 ]; then
    PY="$(command -v python3 || command -v python || true)"
    [ -n "$PY" ] || die "$EXIT_USER_ERROR" "SKIP_INSTALL=1 but there is no python3 on PATH"
    say "SKIP_INSTALL=1: using $PY as it is"
    return 0
  fi
  local lock_hash venv installed="" torch_build python
  python="$(pick_python)"
  # One venv per dependency set (pyproject.toml, the installer and its constraints, the Python, and
  # the torch build this host's driver runs: training/pod/cuda_build.py, which install.sh asks too), on
  # the volume: pods of other branches, or on hosts whose driver needs the other build, use their own and never
  # reinstall the one another pod trains from. The stamp is written last, so an install cut short is
  # redone; two pods that need the same new venv take turns through a lock, and the second reuses
  # the first's install. Nodes of an Instant Cluster other than node 0 keep their own (node_suffix):
  # a lock on a network volume is not to be trusted across machines.
  torch_build="$("$python" training/pod/cuda_build.py 2>/dev/null || true)"  # install.sh says why
  lock_hash="$({ cat pyproject.toml scripts/install.sh scripts/constraints.txt training/pod/cuda_build.py; python_version "$python"
                 echo "$torch_build"; } | sha256sum | cut -c1-16)"
  venv="$VOLUME_PATH/venvs/$lock_hash$(node_suffix)"
  mkdir -p "$VOLUME_PATH/venvs"
  exec 8>"$venv.lock"
  if command -v flock >/dev/null 2>&1 && ! flock -n 8; then
    say "another pod is installing $venv: waiting for it"
    flock 8
  fi
  [ -f "$venv/.installed" ] && installed="$(cat "$venv/.installed")"
  if [ "$installed" = "$lock_hash" ] && "$venv/bin/python" -c "" 2>/dev/null; then
    say "reusing $venv (built for these dependencies)"
  else
    # A venv whose Python is gone (another image) cannot be repaired, only rebuilt.
    "$venv/bin/python" -c "" 2>/dev/null || rm -rf "$venv"
    rm -f "$venv/.installed"
    say "installing into $venv (first run with these dependencies): several minutes"
    VENV="$venv" PYTHON="$python" bash scripts/install.sh gpu \
      || die "$EXIT_SETUP_FAILED" "installing the environment failed (see above)"
    printf '%s\n' "$lock_hash" >"$venv/.installed"
  fi
  exec 8>&-
  PY="$venv/bin/python"
}

python_version() {  # python_version PYTHON: "3.12", or nothing when it does not run
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

pick_python() {
  # The pinned dependencies (numpy 2.4, pillow 13, matplotlib 3.11, trl 1.15) need Python 3.11 or
  # 3.12 (pyproject.toml's requires-python). Images whose python3 is older (Ubuntu 22.04's 3.10)
  # often have python3.12 or python3.11 beside it.
  local candidate version first=""
  for candidate in python3 python3.12 python3.11; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    version="$(python_version "$candidate")"
    first="${first:-${version:-?}}"
    case "$version" in
      3.11|3.12) command -v "$candidate"; return 0 ;;
    esac
  done
  die "$EXIT_USER_ERROR" "no Python 3.11 or 3.12 here (python3 is ${first:-missing}): the pinned dependencies" \
    "need one; use an image that has it (e.g. a runpod/pytorch image for Ubuntu 24.04), or install python3.12"
}

node_suffix() {
  # Instant Cluster nodes sharing one volume must not race on one clone or one venv: node 0 keeps the
  # single-pod paths, every other node has its own (repo-node1/, venv-node1, and its own log).
  if [[ "${NUM_NODES:-1}" =~ ^[0-9]+$ ]] && [ "${NUM_NODES:-1}" -gt 1 ] \
      && [[ "${NODE_RANK:-0}" =~ ^[0-9]+$ ]] && [ "${NODE_RANK:-0}" -gt 0 ]; then
    printf -- '-node%s' "$NODE_RANK"
  fi
}

use_unsloth_cache() {
  # Unsloth writes the code it compiles into unsloth_compiled_cache/ of the working directory (the
  # clone) unless told otherwise: on the volume, a resume reuses it instead of compiling again.
  export UNSLOTH_COMPILE_LOCATION="${UNSLOTH_COMPILE_LOCATION:-$VOLUME_PATH/cache/unsloth_compiled_cache}"
  mkdir -p "$UNSLOTH_COMPILE_LOCATION"
  say "UNSLOTH_COMPILE_LOCATION=$UNSLOTH_COMPILE_LOCATION"
}

on_signal() {  # on_signal NAME: during setup there is no trainer to save, so stop; while parked, end the park
  STOP_SIGNAL=$1
  if [ -n "$SLEEP_PID" ]; then
    kill "$SLEEP_PID" 2>/dev/null || true
    return 0
  fi
  say "got SIG$1 during setup: stopping"
  exit "$EXIT_PREEMPTED"
}

exit_meaning() {  # setup's own codes; the supervisor says what the harness's codes mean
  case "$1" in
    "$EXIT_USER_ERROR") echo "bad environment (see the error above)" ;;
    "$EXIT_SETUP_FAILED") echo "setup failed (see the error above)" ;;
    "$EXIT_PREEMPTED") echo "stopped by a signal" ;;
    *) echo "failed" ;;
  esac
}

stop_this_pod() {  # stop_this_pod WHO: the pod's self-stop, for AUTO_STOP and the dead-man switch alike
  # The documented `runpodctl pod stop` first (`runpodctl stop pod` is a deprecated alias over GraphQL,
  # which RunPod retires), then REST API v2 with the pod's own key; each failure is said with what to
  # do. training/pod/commands.py does the same once the harness's Python is there. awk writes the key into
  # curl's stdin, never into argv.
  local who=$1 answer output rc url="${RUNPOD_API_BASE_URL:-https://api.runpod.io}/v2/pods/$RUNPOD_POD_ID/action"
  if [ -z "$RUNPOD_POD_ID" ]; then
    say "$who but RUNPOD_POD_ID is not set: not on a RunPod pod, nothing to stop"
    return 0
  fi
  say "$who: stopping pod $RUNPOD_POD_ID"
  if command -v runpodctl >/dev/null 2>&1; then
    rc=0
    output="$(timeout 60 runpodctl pod stop "$RUNPOD_POD_ID" 2>&1)" || rc=$?
    if [ "$rc" -eq 0 ]; then
      say "stopped pod $RUNPOD_POD_ID (runpodctl pod stop)"
      return 0
    fi
    say "runpodctl pod stop $RUNPOD_POD_ID failed (exit $rc: $(tail -n 1 <<<"${output:-no output}")); trying RunPod's REST API"
  else
    say "runpodctl is not on PATH (RunPod's images ship it); trying RunPod's REST API"
  fi
  if [ -z "${RUNPOD_API_KEY:+set}" ]; then
    say "error: RUNPOD_API_KEY is not set, so the REST API cannot stop pod $RUNPOD_POD_ID either: stop it in the" \
      "RunPod console (Pods > the pod > Stop); it bills until then"
    return 1
  fi
  answer="$(awk 'BEGIN { printf "Authorization: Bearer %s\n", ENVIRON["RUNPOD_API_KEY"] }' \
    | curl -sS --fail-with-body --max-time 30 --retry "$((RETRY_ATTEMPTS - 1))" --retry-connrefused -H @- \
      -H "Content-Type: application/json" --data '{"action": "stop"}' "$url" 2>&1)" || {
    say "error: RunPod's REST API did not stop pod $RUNPOD_POD_ID ($(tail -n 1 <<<"${answer:-no answer}")): stop it in" \
      "the RunPod console (Pods > the pod > Stop); it bills until then"
    return 1
  }
  say "asked RunPod to stop pod $RUNPOD_POD_ID (REST API)"
}

start_deadman() {
  # The dead-man switch `launch` sets: MAX_LIFETIME_S, the pod stops itself that long after this
  # start (a hung clone, install or run counts); IDLE_STOP_S, after its busiest GPU has stayed under
  # 5% that long once training has started (setup, downloads and model loading leave the GPU idle).
  # A GPU whose use cannot be read (no nvidia-smi, an error, MIG's [N/A]) counts as unknown, never as
  # idle. The watchers outlive the exec of the supervisor (same process) and end with it; what they
  # say goes to the container's log, through the secret mask. A stop that fails is said and tried
  # again, doubling the wait up to 10 minutes, for as long as the pod runs.
  [[ "${MAX_LIFETIME_S:-0}" =~ ^[0-9]+$ ]] || die "$EXIT_USER_ERROR" "MAX_LIFETIME_S=$MAX_LIFETIME_S: a whole number of seconds"
  [[ "${IDLE_STOP_S:-0}" =~ ^[0-9]+$ ]] || die "$EXIT_USER_ERROR" "IDLE_STOP_S=$IDLE_STOP_S: a whole number of seconds"
  [[ "$IDLE_POLL_S" =~ ^[1-9][0-9]*$ ]] || die "$EXIT_USER_ERROR" "IDLE_POLL_S=$IDLE_POLL_S: a whole number of seconds >= 1"
  local main=$$
  if [ "${MAX_LIFETIME_S:-0}" -gt 0 ]; then
    say "dead-man switch: this pod stops itself ${MAX_LIFETIME_S}s after this start"
    (trap - EXIT TERM INT HUP; lifetime_watch "$main") > >(trap '' INT TERM HUP; mask_secrets) 2>&1 &
  fi
  if [ "${IDLE_STOP_S:-0}" -gt 0 ]; then
    say "dead-man switch: this pod stops itself after ${IDLE_STOP_S}s of an idle GPU, once training has started"
    (trap - EXIT TERM INT HUP; idle_watch "$main") > >(trap '' INT TERM HUP; mask_secrets) 2>&1 &
  fi
}

deadman_sleep() {  # deadman_sleep MAIN SECONDS: false once MAIN (this script, then the supervisor) has ended
  sleep "$2"
  kill -0 "$1" 2>/dev/null
}

lifetime_watch() {
  local main=$1 left=$MAX_LIFETIME_S step
  while [ "$left" -gt 0 ]; do
    step=$((left < IDLE_POLL_S ? left : IDLE_POLL_S))
    deadman_sleep "$main" "$step" || return 0
    left=$((left - step))
  done
  deadman_stop "$main" "lifetime_${MAX_LIFETIME_S}s_reached"
}

gpu_use() {  # the busiest GPU's use in %, or nothing when it cannot be read
  local out line most=-1
  out="$(timeout 30 nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null)" || return 0
  while IFS= read -r line; do
    line="${line//[[:space:]]/}"
    if ! [[ "$line" =~ ^[0-9]+$ ]]; then return 0; fi  # [N/A] (MIG) or anything else: unknown
    if [ "$line" -gt "$most" ]; then most=$line; fi
  done <<<"$out"
  if [ "$most" -ge 0 ]; then echo "$most"; fi
}

idle_watch() {
  local main=$1 idle=0 use known=1
  until [ -e "$TRAINING_STARTED_FILE" ]; do
    deadman_sleep "$main" "$IDLE_POLL_S" || return 0
  done
  while deadman_sleep "$main" "$IDLE_POLL_S"; do
    use="$(gpu_use)"
    if [ -z "$use" ]; then
      [ "$known" = 0 ] || say "dead-man switch: the GPU's use cannot be read (nvidia-smi failed, or [N/A] as under MIG):" \
        "the idle clock waits (at ${idle}s) until it can; MAX_LIFETIME_S still holds"
      known=0
      continue
    fi
    known=1
    if [ "$use" -lt 5 ]; then idle=$((idle + IDLE_POLL_S)); else idle=0; fi
    if [ "$idle" -ge "$IDLE_STOP_S" ]; then
      deadman_stop "$main" "gpu_idle_${idle}s"
      return 0
    fi
  done
}

deadman_stop() {  # deadman_stop MAIN REASON: stop this pod, trying again until it is stopped or gone
  local main=$1 why=$2 wait=$IDLE_POLL_S
  while ! stop_this_pod "dead-man switch: $why"; do
    say "dead-man switch: the pod is not stopped; trying again in ${wait}s"
    deadman_sleep "$main" "$wait" || return 0
    wait=$((wait * 2 > 600 ? 600 : wait * 2))
  done
}

park() {  # park WHY: keep the container alive instead of exiting, which would make RunPod restart it
  say "$1: this pod stays up, and billed, until you stop it in the RunPod console (logs: $LOG_FILE)"
  sleep infinity &
  SLEEP_PID=$!
  wait "$SLEEP_PID" || true
}

on_exit() {  # setup ended before the hand-over (after it, the supervisor owns the exit)
  local rc=$?
  set +e
  trap - EXIT
  if [ -n "$STOP_SIGNAL" ]; then
    say "stopped during setup (exit $rc): a restart of this script carries on from the last checkpoint"
    say "run-outcome: outcome=preempted exit=$rc step=none phase=setup"
  else
    say "setup ended with exit code $rc: $(exit_meaning "$rc")"
    # The outcome line (training/outcome_line.py) the fleet reads: setup never trains, so it failed.
    say "run-outcome: outcome=failed exit=$rc step=none phase=setup"
    if [ "$AUTO_STOP" = 1 ]; then
      stop_this_pod "AUTO_STOP=1" || park "AUTO_STOP=1 but the pod could not be stopped"
    elif [ -n "$RUNPOD_POD_ID" ]; then
      # RunPod restarts a container whose command exits: that would set up again, and bill again.
      park "AUTO_STOP is not set"
    fi
  fi
  [ -z "$ASKPASS_DIR" ] || rm -rf "$ASKPASS_DIR"
  if [ -n "$LOG_PID" ]; then
    exec >&- 2>&-  # end of the log: let mask_secrets and tee drain and finish
    wait "$LOG_PID" 2>/dev/null
  fi
  exit "$rc"
}

main "$@"
