#!/usr/bin/env bash
# benches/ceremony.sh [RUNS]
#
# CPU time of the byok process for a one-key ceremony (the demo: 2 of 3 custodians approve the
# plan and the import on their own SoftHSM tokens; RSAES_OAEP_SHA_1 wrapped inside SoftHSM,
# RSA_4096, imported into LocalStack), release build. Waiting on KMS costs no CPU, so the CPU
# time (user + sys of byok, read with bash's `times` for children) excludes KMS latency; wall
# time is shown beside it. Prints every run and the median of RUNS (default 10).
# Figures are kept in docs/performance.md.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
runs=${1:-10}

cargo build --release --bin byok >&2
bin=$PWD/target/release/byok
dir=
trap '[[ -n $dir ]] && scripts/testenv down "$dir" >&2' EXIT
eval "$(BYOK_BIN=$bin scripts/testenv up)"
dir=$BYOK_TESTENV_DIR
# shellcheck disable=SC1091
source "$dir/pins.env"

# One ceremony; prints "cpu_ms wall_ms" (getrusage of the reaped byok child).
one() {
	python3 - "$1" "$2" <<'PY'
import os, resource, subprocess, sys, time
start = time.monotonic()
subprocess.run([os.environ["BIN"], "run", sys.argv[1], "--transcript", sys.argv[2]],
               input=os.environ["ANSWERS"].encode(), capture_output=True, check=True)
wall = (time.monotonic() - start) * 1000
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(int((r.ru_utime + r.ru_stime) * 1000), int(wall))
PY
}
# The HSM PIN, then Alice and Bob approving the plan and then the import (line protocol).
approve="Alice
yes
$BYOK_CUSTODIAN_ALICE_PIN
Bob
yes
$BYOK_CUSTODIAN_BOB_PIN"
export BIN=$bin ANSWERS="$BYOK_HSM_USER_PIN
$approve
$approve
"

cpus=()
for i in $(seq 1 "$runs"); do
	alias=alias/byok-bench-$i-$RANDOM
	scripts/kms-create-external-key "$alias" >/dev/null
	file=$dir/bench-$i.toml
	sed -e "s|^audit_key_sha256 = .*|audit_key_sha256 = \"$BYOK_AUDIT_KEY_SHA256\"|" \
		-e "s|^key = .*|key = \"$alias\"|" \
		-e "s|^region = \(.*\)|region = \1\nendpoint = \"$AWS_ENDPOINT_URL_KMS\"|" \
		-e "s|\"1\{64\}\"|\"$BYOK_CUSTODIAN_ALICE_SHA256\"|" \
		-e "s|\"2\{64\}\"|\"$BYOK_CUSTODIAN_BOB_SHA256\"|" \
		-e "s|\"3\{64\}\"|\"$BYOK_CUSTODIAN_CAROL_SHA256\"|" ceremonies/demo-softhsm.toml >"$file"
	read -r cpu wall < <(one "$file" "$dir/bench-$i.jsonl")
	"$bin" verify "$dir/bench-$i.jsonl" --audit-key-sha256 "$BYOK_AUDIT_KEY_SHA256" >/dev/null
	printf 'run %2d: cpu %4d ms, wall %4d ms\n' "$i" "$cpu" "$wall"
	cpus+=("$cpu")
done
median=$(printf '%s\n' "${cpus[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "ceremony: median byok CPU time ${median} ms over $runs runs (target < 150 ms)"
