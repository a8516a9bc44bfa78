#!/usr/bin/env bash
# Builds the release bundle jvmwatch-<version>-linux-<arch>.tar.gz:
#
#   jvmwatch-<version>-linux-<arch>/
#     bin/jvmwatch                  the sidecar (inspect, serve, supervise, run, agent-path, ...)
#     lib/libjvmwatch.so            the agent: -agentpath:$(jvmwatch agent-path)
#     lib/jvmwatch-api.jar          the io.jvmwatch application API
#     deploy/                       Kubernetes, systemd, Prometheus rules, Grafana dashboard
#     docs/, README.md              the documentation
#     share/man/man1/*.1            man pages (generated from the CLI by `jvmwatch manpage`)
#     share/completions/            bash, zsh and fish completions (`jvmwatch completions`)
#
# Usage: scripts/package.sh [--out DIR] [--from DIR] [--no-build]
#   --out DIR    where the .tar.gz goes (default: dist/)
#   --from DIR   the built artifacts (default: target/release)
#   --no-build   do not run `cargo build --release` first (the tests use this)
# Prints the bundle's path on its last line. tests/e2e/package.rs builds, unpacks and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=dist
from=target/release
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: scripts/package.sh [--out DIR] [--from DIR] [--no-build]" >&2; exit 2 ;;
  esac
done
[ "$build" = 1 ] && cargo build --release
for f in jvmwatch libjvmwatch.so jvmwatch-api.jar; do
  [ -f "$from/$f" ] || { echo "package.sh: $from/$f is missing (cargo build --release)" >&2; exit 1; }
done

# "jvmwatch 0.1.0 (git 1a2b3c4)" -> 0.1.0
version=$("$from/jvmwatch" --version | awk '{print $2}')
arch=$(uname -m)
name="jvmwatch-$version-linux-$arch"
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
b="$stage/$name"
mkdir -p "$b/bin" "$b/lib" "$b/share/man/man1" "$b/share/completions"
install -m 0755 "$from/jvmwatch" "$b/bin/jvmwatch"
install -m 0755 "$from/libjvmwatch.so" "$b/lib/libjvmwatch.so"
install -m 0644 "$from/jvmwatch-api.jar" "$b/lib/jvmwatch-api.jar"
# The release profile keeps line tables for backtraces; the bundle ships without them.
if command -v strip >/dev/null; then
  strip --strip-debug "$b/bin/jvmwatch" "$b/lib/libjvmwatch.so"
fi
cp -R "$root/deploy" "$b/deploy"
cp -R "$root/docs" "$b/docs"
cp "$root/README.md" "$b/README.md"
"$b/bin/jvmwatch" manpage "$b/share/man/man1"
"$b/bin/jvmwatch" completions bash > "$b/share/completions/jvmwatch.bash"
"$b/bin/jvmwatch" completions zsh > "$b/share/completions/_jvmwatch"
"$b/bin/jvmwatch" completions fish > "$b/share/completions/jvmwatch.fish"
# Reproducible order and ownership.
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$stage" -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
