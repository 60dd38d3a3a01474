#!/usr/bin/env bash
# Long fuzzing (issue 15): every cargo-fuzz target of fuzz/ for a given time each, one after
# the other (a 2-core machine: one fuzzer at a time), with seed corpora, and a record of the
# executions, the speed and the findings.
#
#   scripts/fuzz-long.sh                    # every target, 1 hour each
#   scripts/fuzz-long.sh 14400              # 4 hours each
#   scripts/fuzz-long.sh 20 validate        # 20 seconds, one target (the CI smoke run)
#   FUZZ_JOBS=2 scripts/fuzz-long.sh 3600   # two fuzzer processes per target
#
# Targets: parse_write (parse → write → parse round trip, acknowledgements), validate (the
# grammar validator and the inbound reading over whatever parses), smime_read (the inbound
# mail reading path: decrypt, verify, attachment, UNB sender), as4_inbound (the AS4 receiving
# side: asx-rs's reading and verification, our checks, the answer readers).
#
# Seeds: the samples and ../shared/corpus (EDIFACT targets); S/MIME mails made here with the
# openssl CLI from the fixed test keys of fuzz/keys/ (smime_read); real signed and encrypted
# AS4 requests the target writes itself on its first run (as4_inbound, made fresh each run:
# the receiver refuses old timestamps). Corpora grow in fuzz/corpus/<target>/ and are kept
# between runs.
#
# Record: fuzz/runs/<UTC time>.tsv (target, seconds, executions, exec/s, new units, corpus
# size, peak RSS, findings), printed at the end too. Findings (crash-*, leak-*, oom-*,
# timeout-* inputs) land in fuzz/artifacts/<target>/; reproduce one with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>` in fuzz/.
# Exit code 1 when any target found something.
#
# cargo-fuzz's sanitizer flags are nightly features; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain use them (as .ci/run does). `cargo install cargo-fuzz --locked` if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_EACH=${1:-3600}
shift || true
ALL=(parse_write validate smime_read as4_inbound)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
JOBS=${FUZZ_JOBS:-1}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || {
  echo "fuzz-long: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p fuzz/runs
record="fuzz/runs/$stamp.tsv"
printf 'target\tseconds\texecutions\texec_per_s\tnew_units\tcorpus\tpeak_rss_mb\tfindings\n' >"$record"

seed_edifact() {
  local dir=$1
  mkdir -p "$dir"
  find samples -name '*.edi' -exec cp {} "$dir/" \;
  find ../shared/corpus -name '*.edi' -exec cp {} "$dir/" \; 2>/dev/null || true
}

# S/MIME mails to our fuzz identities, signed by either, in the forms partners send:
# AuthEnvelopedData (AES-128-GCM) to brainpool (ECDH, SHA-256 KDF) and RSA (OAEP),
# EnvelopedData with AES-256-CBC, opaque and detached (multipart/signed) signatures.
seed_smime() {
  local dir=$1 keys=fuzz/keys work
  mkdir -p "$dir"
  work=$(mktemp -d)
  local sample
  sample=$(find samples/inbound -name 'ordrsp_19133_a99_rejected.edi' | head -1)
  {
    printf 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
    printf 'Content-Type: application/octet-stream; name="ORDRSP.txt"\r\n'
    printf 'Content-Disposition: attachment; filename="ORDRSP.txt"\r\n'
    printf 'Content-Transfer-Encoding: base64\r\n\r\n'
    base64 "$sample" | sed 's/$/\r/'
    printf '\r\n--b1--\r\n'
  } >"$work/entity"
  cp "$work/entity" "$dir/plain-entity"
  openssl cms -sign -in "$work/entity" -signer $keys/mail-ec.pem -inkey $keys/mail-ec.key \
    -md sha256 -nodetach -outform SMIME -out "$work/signed-ec" 2>/dev/null
  openssl cms -sign -in "$work/entity" -signer $keys/mail-rsa.pem -inkey $keys/mail-rsa.key \
    -md sha256 -keyopt rsa_padding_mode:pss -outform SMIME -out "$work/signed-rsa-detached" 2>/dev/null
  local n=0
  for signed in "$work/signed-ec" "$work/signed-rsa-detached"; do
    cp "$signed" "$dir/$(basename "$signed")"
    for recip in ec rsa; do
      local opts=(-keyopt ecdh_kdf_md:sha256)
      [ $recip = rsa ] && opts=(-keyopt rsa_padding_mode:oaep)
      for cipher in -aes-128-gcm -aes-256-cbc; do
        n=$((n + 1))
        {
          printf 'From: partner@mako.test\r\nTo: gateway@mako.test\r\nSubject: ORDRSP.txt\r\n'
          openssl cms -encrypt -in "$signed" $cipher -recip $keys/mail-$recip.pem "${opts[@]}" \
            -outform SMIME 2>/dev/null
        } >"$dir/mail-$n-$recip$cipher"
      done
    done
  done
  rm -rf "$work"
}

seed_as4() {
  local dir=$1
  mkdir -p "$dir"
  # The target writes real requests on its first input when asked to.
  (cd fuzz && MAKO_FUZZ_AS4_SEEDS="$ROOT/$dir" cargo fuzz run -O as4_inbound \
    "$ROOT/$dir" -- -runs=0 >/dev/null 2>&1) || true
}

echo "fuzz-long: ${TARGETS[*]}, $SECONDS_EACH s each, $JOBS job(s); record $record"
found=0
for target in "${TARGETS[@]}"; do
  corpus=fuzz/corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  case $target in
    parse_write | validate) seed_edifact "$corpus" ;;
    smime_read) seed_smime "$corpus" ;;
    as4_inbound) seed_as4 "$corpus" ;;
  esac
  # A target that does not build is a failure of its own, said so (not a run with no figures).
  if ! (cd fuzz && cargo fuzz build -O "$target" >"$ROOT/fuzz/runs/$stamp-$target-build.log" 2>&1); then
    echo "fuzz-long: $target does not build; fuzz/runs/$stamp-$target-build.log:" >&2
    grep -E '^(error|warning: unused)' -A 6 "fuzz/runs/$stamp-$target-build.log" | head -40 >&2
    exit 2
  fi
  before=$(find "$artifacts" -type f | wc -l)
  log=fuzz/runs/$stamp-$target.log
  echo "fuzz-long: $target for $SECONDS_EACH s (corpus $(find "$corpus" -type f | wc -l) files)"
  # -timeout: an input taking longer than 25 s is a finding (a hang); -print_final_stats
  # gives the figures recorded below.
  parallel=()
  [ "$JOBS" -gt 1 ] && parallel=(-jobs="$JOBS" -workers="$JOBS")
  (cd fuzz && cargo fuzz run -O "$target" "$ROOT/$corpus" -- \
    -max_total_time="$SECONDS_EACH" -timeout=25 -print_final_stats=1 "${parallel[@]}" \
    -artifact_prefix="$ROOT/$artifacts/" >"$ROOT/$log" 2>&1) || true
  if [ "$JOBS" -gt 1 ]; then
    cat fuzz/fuzz-*.log >>"$log" 2>/dev/null || true
    rm -f fuzz/fuzz-*.log
  fi
  stat() { { grep -h "^stat::$1:" "$log" || true; } | awk '{s += $2} END {print s + 0}'; }
  execs=$(stat number_of_executed_units)
  speed=$(stat average_exec_per_sec)
  units=$(stat new_units_added)
  rss=$({ grep -h "^stat::peak_rss_mb:" "$log" || true; } | awk '{if ($2 > m) m = $2} END {print m + 0}')
  after=$(find "$artifacts" -type f | wc -l)
  findings=$((after - before))
  [ "$findings" -gt 0 ] && found=1
  if [ "$execs" = 0 ]; then
    echo "fuzz-long: $target ran no input; see $log" >&2
    tail -20 "$log" >&2
    found=1
  fi
  size=$(find "$corpus" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$SECONDS_EACH" "$execs" "$speed" "$units" \
    "$size" "$rss" "$findings" >>"$record"
  echo "fuzz-long: $target: $execs executions, $speed exec/s, $units new units, corpus $size, findings $findings"
done
echo
column -t -s $'\t' "$record"
[ "$found" = 0 ] || echo "fuzz-long: findings in fuzz/artifacts/ (see the logs in fuzz/runs/$stamp-*.log)"
exit "$found"
