#!/usr/bin/env bash
# Runs every fuzz target for a fixed time (default 60 s each) on the committed corpus.
#   fuzz/run.sh            # all targets, 60 s each
#   fuzz/run.sh 600 receive  # one target, 10 minutes
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Not part of CI.
# New inputs that grow coverage are added to fuzz/corpus/<target>/; commit the useful ones
# (after `cargo fuzz cmin <target>`). A crash leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(receive signature config template)
fi
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "== $target: ${seconds}s"
  # -rss_limit_mb: an input that makes handoff allocate without bound is a crash too.
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 -timeout=10
done
