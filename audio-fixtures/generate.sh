#!/usr/bin/env bash
# (Re)creates the caller utterances used by the end-to-end tests: 8 kHz mono 16-bit WAV files,
# each padded with 300 ms of silence at both ends.
#
# Needs the `flite` command line (Debian package `flite`) and `sox` (Debian package `sox`).
# Speech uses flite's `slt` voice, which PocketSphinx's en-us model recognises best of the flite
# voices over the telephone path (see src/backends/tests.rs). The output is deterministic.
#
# Usage: audio-fixtures/generate.sh [VOICE]     (run from anywhere; writes next to this script)
set -euo pipefail

VOICE="${1:-kal16}"
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

for tool in flite sox; do
    command -v "$tool" >/dev/null || { echo "generate.sh: '$tool' not found (apt-get install $tool)" >&2; exit 1; }
done

# file name -> what the caller says
PHRASES=(
    "name|my name is john smith"
    "location|i live in chicago"
    "yes|yes"
    "no|no"
    "number_five|five"
    "number_three|three years"
    "free_text|i worked in a warehouse"
    "question_pay|how much money will i make"
    "no_questions|no thank you"
)

for entry in "${PHRASES[@]}"; do
    name="${entry%%|*}"
    text="${entry#*|}"
    flite -voice "$VOICE" -t "$text" -o "$TMP/$name.wav"
    # -R: repeatable dither; normalise to -3 dBFS peak, resample to 8 kHz, pad.
    sox -R "$TMP/$name.wav" -r 8000 -c 1 -b 16 -e signed-integer "$DIR/$name.wav" \
        gain -n -3 pad 0.3 0.3
    echo "$name.wav: $text"
done

# Unclear noise: 0.8 s of brown noise, band-limited to the voice band, with a syllable-rate
# (5 Hz) loudness wobble and soft edges, so it looks like speech to a voice detector but carries
# no words.
sox -R -n -r 8000 -c 1 -b 16 -e signed-integer "$DIR/mumble.wav" \
    synth 0.8 brownnoise \
    sinc 150-1800 tremolo 5 90 fade q 0.08 0.8 0.1 gain -n -9 pad 0.3 0.3
echo "mumble.wav: (brown noise shaped like speech)"
