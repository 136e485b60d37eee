#!/usr/bin/env bash
# Screenshot the HTML reports of a bids-eeg2fmri output with headless Chromium.
#
# Usage: tools/report_screenshots.sh OUTPUT_DIR DEST_DIR [WIDTH] [HEIGHT]
#
# Writes DEST_DIR/<page>.png for every OUTPUT_DIR/sub-*.html and OUTPUT_DIR/group.html,
# WIDTH x HEIGHT pixels (default 1280 x 16000: tall enough for a whole report; the part
# below the page's end is blank). Set CHROMIUM to use another browser binary.
set -euo pipefail

usage() {
    echo "usage: $0 OUTPUT_DIR DEST_DIR [WIDTH] [HEIGHT]" >&2
    exit 64
}

[[ $# -ge 2 && $# -le 4 ]] || usage
output_dir=$1
dest_dir=$2
width=${3:-1280}
height=${4:-16000}
chromium=${CHROMIUM:-/usr/bin/chromium}

if [[ ! -x $chromium ]]; then
    echo "error: Chromium not found at $chromium (install the 'chromium' package, or set" \
        "CHROMIUM to its path)" >&2
    exit 69
fi
if [[ ! -d $output_dir ]]; then
    echo "error: OUTPUT_DIR $output_dir is not a folder" >&2
    exit 66
fi
[[ $width =~ ^[0-9]+$ && $height =~ ^[0-9]+$ ]] || {
    echo "error: WIDTH and HEIGHT must be whole numbers of pixels, got $width x $height" >&2
    exit 64
}

shopt -s nullglob
pages=("$output_dir"/sub-*.html)
[[ -f $output_dir/group.html ]] && pages+=("$output_dir/group.html")
if [[ ${#pages[@]} -eq 0 ]]; then
    echo "error: no sub-*.html or group.html in $output_dir" >&2
    exit 66
fi

mkdir -p "$dest_dir"
dest_dir=$(cd "$dest_dir" && pwd)
profile=$(mktemp -d "${TMPDIR:-/tmp}/report-screenshots.XXXXXX")
trap 'rm -rf "$profile"' EXIT

status=0
for page in "${pages[@]}"; do
    absolute=$(cd "$(dirname "$page")" && pwd)/$(basename "$page")
    png=$dest_dir/$(basename "$page" .html).png
    rm -f "$png"
    # A fresh profile per page: no state carried from one page to the next.
    user_data=$(mktemp -d "$profile/user.XXXXXX")
    if "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$user_data" --screenshot="$png" \
        --window-size="$width,$height" "file://$absolute" >"$profile/chromium.log" 2>&1 &&
        [[ -s $png ]]; then
        echo "$png"
    else
        echo "error: no screenshot of $page; Chromium said:" >&2
        tail -n 5 "$profile/chromium.log" >&2
        status=1
    fi
done
exit "$status"
