"""The user-data script of a cloud worker: a short bash bootstrap that holds no secret.

It only points at things: the backend URL, the store keys of the bundle the client
uploaded (cheerful's own wheel and the user's requirements) and the worker's options. The
instance reads the bundle with its IAM role, installs it with ``uv`` into a virtualenv on
the same Python minor version as the client (cloudpickled code needs it: uv takes that
Python from the image when it has it, else downloads a standalone build of it from
python-build-standalone; an instance with no route to the internet needs it on its AMI or
installed by ``setup=``), starts
``cheerful worker`` and, when the worker leaves, uploads its bootstrap log to
``fleet/boot/<instance>.log`` and powers off (instances are launched with shutdown
behaviour "terminate", so nothing keeps billing).

Three variables may be set in the environment before the script runs, so that it can be
run for real off EC2 (the tests do): ``CHEERFUL_ROOT`` (where it installs, default
``/opt/cheerful``), ``CHEERFUL_METADATA_URL`` (the instance metadata service; empty: not
on EC2, the node is named after the host) and ``CHEERFUL_POWEROFF`` (0: do not power off).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from cheerful.errors import ConfigError

from . import DEFAULT_IDLE_EXIT_S
from .budget import HARD_STOP_AFTER_S

__all__ = ["USER_DATA_LIMIT", "BootSpec", "render_user_data"]

USER_DATA_LIMIT = 16 * 1024
"""EC2's limit on user-data, in bytes (before base64)."""


@dataclass(frozen=True)
class BootSpec:
    """What a cloud worker needs to know: where the work is and what to install."""

    backend: str
    """The canonical ``s3://`` backend URL."""
    wheel_key: str
    """The store key (under the backend prefix) of cheerful's wheel."""
    python: str
    """The Python minor version to run, as "3.11"."""
    requirements_key: str | None = None
    job: str | None = None
    slots: int | None = None
    idle_exit: float = DEFAULT_IDLE_EXIT_S
    grace: float = 30.0
    setup: tuple[str, ...] = ()
    """Shell commands run once, before the worker starts (their output goes to the log)."""
    gpus: bool = False
    """The instances may have GPUs: the worker runs one slot per GPU it finds."""
    stop_at: float | None = None
    """A unix time by which the worker stops (the fleet's budget); the instance powers off
    a few minutes later whatever happens."""


def render_user_data(spec: BootSpec) -> str:
    """The bootstrap script for ``spec``; raises ConfigError past EC2's 16 KB limit."""
    from ..worker.spot import EC2_METADATA_URL  # here: the worker package is heavy

    worker = ["--idle-exit", f"{spec.idle_exit:g}", "--grace", f"{spec.grace:g}"]
    if spec.job:
        worker += ["--job", spec.job]
    if spec.slots:
        worker += ["--slots", str(spec.slots)]
    if spec.stop_at is not None:
        worker += ["--stop-at", f"{spec.stop_at:.0f}"]
    if spec.gpus:
        worker += ["--gpus", "auto"]
    values = {
        "BACKEND": spec.backend,
        "WHEEL_KEY": spec.wheel_key,
        "REQUIREMENTS_KEY": spec.requirements_key or "",
        "PYTHON_VERSION": spec.python,
        "WORKER_OPTIONS": shlex.join(worker),
        "HARD_STOP": "" if spec.stop_at is None else f"{spec.stop_at + HARD_STOP_AFTER_S:.0f}",
    }
    header = "\n".join(f"CHEERFUL_{k}={shlex.quote(v)}" for k, v in values.items())
    header += "\nCHEERFUL_SETUP=(" + " ".join(shlex.quote(c) for c in spec.setup) + ")"
    script = _TEMPLATE.replace("@VALUES@", header).replace("@IMDS@", EC2_METADATA_URL)
    size = len(script.encode())
    if size > USER_DATA_LIMIT:
        raise ConfigError(
            f"the bootstrap script is {size} bytes, over EC2's {USER_DATA_LIMIT}: shorten the "
            "backend URL or the job id"
        )
    return script


_TEMPLATE = r"""#!/bin/bash
# cheerful worker bootstrap, rendered by `cheerful fleet up`. It holds no credential:
# the instance's IAM role grants access to the job's queue and the store prefix only.
set -uo pipefail
@VALUES@
: "${CHEERFUL_ROOT:=/opt/cheerful}"
: "${CHEERFUL_METADATA_URL=@IMDS@}"
: "${CHEERFUL_POWEROFF:=1}"
mkdir -p "$CHEERFUL_ROOT"
LOG="$CHEERFUL_ROOT/bootstrap.log"
exec >>"$LOG" 2>&1
say() { echo "[cheerful $(date -u +%H:%M:%S)] $*"; }

metadata() {  # IMDSv2: a session token first, then the path
    [ -n "$CHEERFUL_METADATA_URL" ] || return 1
    local token
    token=$(curl -fsS -m 2 -X PUT "$CHEERFUL_METADATA_URL/latest/api/token" \
        -H "X-aws-ec2-metadata-token-ttl-seconds: 300") || return 1
    curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $token" \
        "$CHEERFUL_METADATA_URL/latest/meta-data/$1"
}

NODE=$(metadata instance-id || hostname)
NODE=$(echo "$NODE" | tr -c 'A-Za-z0-9_.\n-' '-')
VENV="$CHEERFUL_ROOT/venv"
PY="$VENV/bin/python"

store() {  # store get KEY FILE | store put KEY FILE: the backend's S3 store, with the role
    "$PY" - "$CHEERFUL_BACKEND" "$@" <<'PYTHON'
import sys
from urllib.parse import parse_qs, unquote, urlsplit

import boto3

url, action, key, path = sys.argv[1:5]
parts = urlsplit(url)
options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
prefix = unquote(parts.path).strip("/")
key = f"{prefix}/{key}" if prefix else key
endpoint = options.get("s3_endpoint") or options.get("endpoint_url")
s3 = boto3.client("s3", region_name=options.get("region"), endpoint_url=endpoint)
if action == "get":
    s3.download_file(parts.netloc, key, path)
else:
    s3.upload_file(path, parts.netloc, key)
PYTHON
}

failed() {  # failed WHAT COMMAND CODE: record why this instance gives up
    say "$1 failed (exit code $3): $2"
    printf '{"node": "%s", "state": "%s failed", "command": %s, "exit_code": %s, "at": %s}\n' \
        "$NODE" "$1" "$(printf '%s' "$2" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" \
        "$3" "$(date +%s)" >"$CHEERFUL_ROOT/boot.json"
    store put "fleet/boot/$NODE.json" "$CHEERFUL_ROOT/boot.json" || say "could not record it"
}

finish() {
    code=$?
    say "bootstrap ends (exit code $code)"
    if [ -x "$PY" ]; then
        if [ "$code" != 0 ] && [ ! -e "$CHEERFUL_ROOT/boot.json" ]; then
            failed bootstrap "the bootstrap (see fleet/boot/$NODE.log)" "$code"
        fi
        store put "fleet/boot/$NODE.log" "$LOG" || say "could not upload this log"
    fi
    if [ "$CHEERFUL_POWEROFF" = 1 ]; then
        cat "$LOG" >/dev/console 2>/dev/null  # `aws ec2 get-console-output` shows it too
        sync
        shutdown -h now || poweroff
    fi
}
trap finish EXIT

say "node $NODE: installing Python $CHEERFUL_PYTHON_VERSION and cheerful"
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    if command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    elif command -v dnf >/dev/null; then
        dnf install -y -q python3 python3-pip
    fi
fi
python3 -m venv "$CHEERFUL_ROOT/boot" && "$CHEERFUL_ROOT/boot/bin/pip" install -q uv || exit 1
UV="$CHEERFUL_ROOT/boot/bin/uv"
"$UV" venv -q --python "$CHEERFUL_PYTHON_VERSION" "$VENV" || exit 1
"$UV" pip install -q --python "$PY" boto3 || exit 1

BUNDLE="$CHEERFUL_ROOT/bundle"
mkdir -p "$BUNDLE"
WHEEL="$BUNDLE/${CHEERFUL_WHEEL_KEY##*/}"
store get "$CHEERFUL_WHEEL_KEY" "$WHEEL" || exit 1
"$UV" pip install -q --python "$PY" "$WHEEL[aws]" || exit 1
if [ -n "$CHEERFUL_REQUIREMENTS_KEY" ]; then
    store get "$CHEERFUL_REQUIREMENTS_KEY" "$BUNDLE/requirements.txt" || exit 1
    "$UV" pip install -q --python "$PY" -r "$BUNDLE/requirements.txt" || exit 1
fi

for command in "${CHEERFUL_SETUP[@]}"; do
    say "setup: $command"
    bash -c "$command"
    status=$?
    if [ "$status" != 0 ]; then
        failed setup "$command" "$status"
        exit 1
    fi
done
if [ -n "$CHEERFUL_HARD_STOP" ] && [ "$CHEERFUL_POWEROFF" = 1 ]; then  # the budget's backstop
    (sleep $(( CHEERFUL_HARD_STOP - $(date +%s) )) && shutdown -h now) >/dev/null 2>&1 &
fi

METADATA=()
[ -n "$CHEERFUL_METADATA_URL" ] && METADATA=(--metadata-url "$CHEERFUL_METADATA_URL")
say "starting: cheerful worker $CHEERFUL_WORKER_OPTIONS"
store put "fleet/boot/$NODE.log" "$LOG" || say "could not upload this log"
eval "set -- $CHEERFUL_WORKER_OPTIONS"
"$VENV/bin/cheerful" worker --backend "$CHEERFUL_BACKEND" --node "$NODE" \
    "${METADATA[@]}" "$@"
"""
