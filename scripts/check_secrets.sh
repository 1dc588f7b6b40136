#!/usr/bin/env bash
# Secrets scan: fail when a project file holds something that looks like a secret (password,
# private key, cloud or API token, ...) and is not already accepted in .secrets.baseline.
#
#   scripts/check_secrets.sh                    scan; exit 0 clean, 1 something new, 2 cannot scan
#   scripts/check_secrets.sh --update-baseline  rewrite .secrets.baseline from the current files
#
# The files are the project's own: tracked and untracked, minus what .gitignore excludes (.venv,
# warehouse, data, dbt/target, .env, ...), as `git ls-files -co --exclude-standard` lists them.
# A false positive is accepted with an inline `# pragma: allowlist secret` comment, or with
# --update-baseline followed by `detect-secrets audit .secrets.baseline` to mark it as such.
set -euo pipefail
cd "$(dirname "$0")/.."

BASELINE=.secrets.baseline
# Lock files hold package hashes, which look like tokens.
EXCLUDE_FILES='(^|/)[^/]*\.lock$|^\.secrets\.baseline$'

tool() {
    if [ -x ".venv/bin/$1" ]; then
        echo ".venv/bin/$1"
    elif command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    else
        echo "check_secrets: $1 not found: run \`make install\` (detect-secrets is a dev dependency)" >&2
        exit 2
    fi
}

files=()
while IFS= read -r -d '' file; do
    # `ls-files -c` still lists a tracked file that was deleted from the work tree.
    if [ -f "$file" ] && ! [[ "$file" =~ $EXCLUDE_FILES ]]; then
        files+=("$file")
    fi
done < <(git ls-files -z -co --exclude-standard)

if [ "${1:-}" = "--update-baseline" ]; then
    scan=$(tool detect-secrets)
    if [ -f "$BASELINE" ]; then
        # In place, keeping its settings and what `detect-secrets audit` recorded.
        "$scan" scan --baseline "$BASELINE" "${files[@]}"
    else
        "$scan" scan --exclude-files "$EXCLUDE_FILES" "${files[@]}" > "$BASELINE.tmp"
        mv "$BASELINE.tmp" "$BASELINE"
    fi
    echo "check_secrets: wrote $BASELINE from ${#files[@]} files; review the diff before committing"
    exit 0
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--update-baseline]" >&2
    exit 2
fi

if [ ! -f "$BASELINE" ]; then
    echo "check_secrets: $BASELINE is missing: create it with $0 --update-baseline" >&2
    exit 2
fi

hook=$(tool detect-secrets-hook)
# The hook rewrites the baseline it is given when line numbers move; give it a copy so that a
# check never edits a tracked file.
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
cp "$BASELINE" "$workdir/baseline"

status=0
"$hook" --baseline "$workdir/baseline" "${files[@]}" || status=$?
case $status in
    0) echo "check_secrets: no new secrets in ${#files[@]} files" ;;
    # 3: nothing new, but the baseline's line numbers are out of date.
    3) echo "check_secrets: no new secrets in ${#files[@]} files" \
            "(line numbers in $BASELINE moved: refresh it with $0 --update-baseline)"
       status=0 ;;
    *) echo "check_secrets: FAILED: the files above hold possible secrets that are not in $BASELINE" >&2
       status=1 ;;
esac
exit $status
