#!/usr/bin/env bash
# Our parser side by side with the peer parsers of ../shared/bench, in one run.
#
#   scripts/bench-peers.sh                  # 100 MB MSCONS + UTILMD, 3 runs each
#   SIZE_MB=10 RUNS=1 scripts/bench-peers.sh
#   SKIP_SETUP=1 ...                        # reuse the peers an earlier run installed
#
# It builds `mako-gateway` in release mode, lets ../shared/bench/run_peers.sh install and build
# the peers (Python, JavaScript, Rust, and the memchr floor) into $PEERS_DIR, then runs the
# peer table with our binary added as one more row (`mako-gateway parse --format stats`
# prints the same `segments` and `parse_s` fields as the peer drivers).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bench="${SHARED_BENCH:-$here/../shared/bench}"
export PEERS_DIR="${PEERS_DIR:-${TMPDIR:-/tmp}/edifact-peers}"
export SIZE_MB="${SIZE_MB:-100}" RUNS="${RUNS:-3}"
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
if [ -z "${SKIP_SETUP:-}" ]; then
  # Installs the peers and prints the floors; its own table is printed again below with us in it.
  bash "$bench/run_peers.sh" > "$PEERS_DIR.setup.log" 2>&1 || { tail -20 "$PEERS_DIR.setup.log"; exit 1; }
fi
export SKIP_SETUP=1
python3 - "$bench" "$here/target/release/mako-gateway" <<'PY'
import json, os, subprocess, sys
bench, ours = sys.argv[1], sys.argv[2]
sys.path.insert(0, bench)
import run_peers
peers = run_peers.peers
run_peers.peers = lambda d: peers(d)[:-1] + [("mako-gateway", "Rust", [ours, "parse", "--format", "stats"])] + peers(d)[-1:]
d = os.environ["PEERS_DIR"]; size = os.environ["SIZE_MB"]
files, expect = [], []
for kind in ("mscons", "utilmd"):
    f = f"{d}/data/{kind}_{size}mb.edi"
    meta = json.loads(subprocess.check_output(["python3", f"{bench}/gen_edifact.py", "--kind", kind, "--size-mb", size, "--out", f]))
    files.append(f); expect += ["--expect", f"{f}={meta['segments']}"]
sys.argv = ["run_peers.py", "--peers-dir", d, "--runs", os.environ["RUNS"]] + expect + files
run_peers.main()
PY
