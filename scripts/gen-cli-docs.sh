#!/usr/bin/env bash
# Regenerates docs/cli.md from the built binary's --help output (tests/e2e/cli.rs checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/jvmwatch
subs=$("$bin" --help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}' | grep -v '^help$')
{
  echo '# `jvmwatch` command line'
  echo
  echo 'The `--help` output of every subcommand, verbatim. A test (`tests/e2e/cli.rs`) fails when this file and'
  echo 'the binary disagree; regenerate it with `scripts/gen-cli-docs.sh` after `cargo build --release`.'
  echo
  echo '## jvmwatch'
  echo
  echo '```text'
  "$bin" --help
  echo '```'
  for s in $subs; do
    echo
    echo "## jvmwatch $s"
    echo
    echo '```text'
    "$bin" $s --help
    echo '```'
  done
} > docs/cli.md
