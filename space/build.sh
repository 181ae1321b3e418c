#!/usr/bin/env bash
# Assemble a Hugging Face Space folder from this checkout: code, examples, shipped identities,
# requirements (root + space/requirements.txt), packages.txt and the README front matter.
# Usage: bash space/build.sh OUT_DIR   then: cd OUT_DIR && git init && git add . && push to the Space repo
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash space/build.sh OUT_DIR}
mkdir -p "$out"
git ls-files -z app.py emotalk examples checkpoints packages.txt DESIGN.md LICENSE* \
  | xargs -0 -I{} cp --parents {} "$out"/
{ cat requirements.txt; echo; grep -v '^\s*#' space/requirements.txt; } > "$out/requirements.txt"
{ cat space/front-matter.yml; echo; cat README.md; } > "$out/README.md"
echo "space: assembled in $out ($(du -sh "$out" | cut -f1))"
