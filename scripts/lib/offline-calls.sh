# Shared by the scripts that call a release server on the offline models (scripts/voice-latency,
# scripts/barge-in-latency); sourced from the repository's root after `set -euo pipefail`, with
# the calling script's name as its argument. It builds the binary (unless RECEPTIONIST_BIN names
# one), checks the tools, makes the work directory (KEEP, or a temporary one removed at exit, as
# the server is stopped), and defines `say` (a caller's words as a phone line carries them) and
# `start_server` (a server on the models in RECEPTIONIST_MODELS_DIR or data/models, with
# SERVE_ARGS; sets `base` and `key`).
SCRIPT="$1"
if [ -z "${RECEPTIONIST_BIN:-}" ]; then
    cargo build --release --locked --bin receptionist >&2
    RECEPTIONIST_BIN="${CARGO_TARGET_DIR:-target}/release/receptionist"
fi
for tool in flite espeak-ng sox curl python3; do
    command -v "$tool" >/dev/null || { echo "scripts/$SCRIPT needs $tool" >&2; exit 2; }
done
BIN="$(realpath "$RECEPTIONIST_BIN")"
MODELS="$(realpath "${RECEPTIONIST_MODELS_DIR:-data/models}")"

work="${KEEP:-$(mktemp -d)}"
mkdir -p "$work"
server_pid=""
# stop the server; keep the work directory only when asked to
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# what the caller says, in a voice ("flite:NAME" or "espeak:NAME"), as a phone line carries it
# (8 kHz mono) in $work/NAME.wav; sox effects after the level, 0.2 s of silence either side by
# default
say() { # voice name text [effect ...]
    local voice="$1" name="$2" text="$3" raw="$work/$2.raw.wav"
    shift 3
    local effects=("$@")
    [ ${#effects[@]} -gt 0 ] || effects=(pad 0.2 0.2)
    case "$voice" in
        flite:*) flite -voice "${voice#flite:}" -t "$text" -o "$raw" ;;
        espeak:*) espeak-ng -v "${voice#espeak:}" -s 150 -w "$raw" "$text" ;;
    esac
    sox -R "$raw" -r 8000 -c 1 -b 16 -e signed-integer "$work/$name.wav" gain -n -3 "${effects[@]}"
}

start_server() { # workspace-name port
    local data="$work/data"
    mkdir -p "$data"
    key="$("$BIN" workspace create "$1" --data-dir "$data" 2>/dev/null | grep -o 'rk_[A-Za-z0-9_]*' | head -1)"
    [ -n "$key" ] || { echo "$SCRIPT: could not create a workspace" >&2; exit 1; }
    TWILIO_AUTH_TOKEN=dev-secret "$BIN" serve --listen "127.0.0.1:$2" --data-dir "$data" \
        --models-dir "$MODELS" ${SERVE_ARGS:-} >"$work/server.log" 2>&1 &
    server_pid=$!
    base="http://127.0.0.1:$2"
    for _ in $(seq 1 120); do
        curl -sf "$base/healthz" >/dev/null 2>&1 && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
        sleep 0.5
    done
    grep -o 'offline speech recogniser[^"]*\|stt="[a-z]*"\|tts="[a-z]*"\|end_of_turn="[a-z]*"' "$work/server.log" | sort -u >&2 || true
}
