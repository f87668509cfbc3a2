#!/usr/bin/env bash
# Count the words (as `wc -w`) and bytes (as `wc -c`) of the input's `text` and print
# {"text", "word_count", "char_count"} as one JSON object.
set -euo pipefail

input_file="${MIRROR_NEURON_INPUT_FILE:?MIRROR_NEURON_INPUT_FILE is not set}"

# Write the text's exact UTF-8 bytes (no trailing newline added) to stdout.
emit_text() {
  python3 -c '
import json, sys
with open(sys.argv[1], encoding="utf-8") as handle:
    body = json.load(handle)
text = body.get("text") if isinstance(body, dict) else None
sys.stdout.buffer.write((text if isinstance(text, str) else "").encode("utf-8", "replace"))
' "$input_file"
}

# $(( )) drops the padding some wc implementations print.
word_count=$(( $(emit_text | wc -w) ))
char_count=$(( $(emit_text | wc -c) ))

python3 -c '
import json, sys
with open(sys.argv[1], encoding="utf-8") as handle:
    body = json.load(handle)
text = body.get("text") if isinstance(body, dict) else None
print(json.dumps({
    "text": text if isinstance(text, str) else "",
    "word_count": int(sys.argv[2]),
    "char_count": int(sys.argv[3]),
}))
' "$input_file" "$word_count" "$char_count"
