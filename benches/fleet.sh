#!/usr/bin/env bash
# benches/fleet.sh [RUNS]
#
# Ceremonies with many targets: a `[targets]` table (services s0..sN-1 x environment e) with
# create = true, so byok creates every key (CreateKey with Origin EXTERNAL, then CreateAlias)
# before importing into it; 2 of 3 custodians approve the plan (Alice, Bob) and the import
# (Alice, Carol) once for all targets, on their own SoftHSM tokens; RSAES_OAEP_SHA_1 inside
# SoftHSM with RSA_2048 (LocalStack makes a fresh RSA key pair per GetParametersForImport; 2048
# keeps that from dominating). Release build in /tmp/bench-target (BYOK_BENCH_TARGET_DIR), one
# test environment (scripts/testenv up) for every measurement, fresh aliases for every
# ceremony, every transcript verified. Each figure is the median of RUNS (default 3):
#
#  1. byok's own time per target. User + sys CPU time of the byok child for a 20-target and for
#     a 1-target ceremony (default --kms-concurrency 4), against LocalStack directly, with
#     [kms.rates] raised to 1000/s for GetParametersForImport, ImportKeyMaterial, CreateKey and
#     CreateAlias so byok's pacing never waits. Waiting on KMS costs no CPU. As in
#     benches/ceremony.sh the CPU time comes from getrusage(RUSAGE_CHILDREN) in the Python
#     process that runs byok, but as the growth across the run: when python3 is a pyenv shim,
#     RUSAGE_CHILDREN already holds the shim's own children (~90 ms) when the script starts.
#     Reports (cpu20 - cpu1) / 19, the marginal cost of one more target, and cpu20 / 20.
#     Target: <= 5 ms per target.
#  2. Concurrency. scripts/kms-proxy --delay-ms 50 in front of LocalStack (every call answered
#     50 ms late, like a distant region), rates raised as in 1; wall time of a 20-target
#     ceremony with --kms-concurrency 4 and with --kms-concurrency 1. Target: c1 / c4 >= 3.
#     LocalStack's own CPU time during each run is shown beside it (/proc/PID/stat): one
#     Python process that generates an RSA key pair per GetParametersForImport, so it can
#     bound what concurrency gains on a small machine.
#  3. Quotas. scripts/kms-proxy --default-quotas (a ThrottlingException for any call above
#     AWS's default request quotas, e.g. GetParametersForImport 1/s, CreateKey 5/s,
#     ImportKeyMaterial 15/s), byok at its default rates (no [kms.rates]), a fresh proxy per
#     run: wall time of a 30-target ceremony over the floor the GetParametersForImport quota
#     allows (29 s: 30 calls at 1/s, the first one free). Target: <= 1.1. The run must succeed
#     (no throttling error reaches the operator); the `throttled` lines of the proxy's --log
#     count the throttles that happened anyway (byok retried them).
#  4. KMS floor. Wall time of a 10-target ceremony against LocalStack directly, rates raised,
#     with --kms-concurrency 1 (the same calls one after another) and 4 (shown beside it),
#     over benches/floor_boto3.py 10: the same KMS calls (8 per target, as the proxy log of a
#     byok run shows them) from one warm boto3 client in one process, sequentially, SDK
#     retries off, timed without process start-up. Target for the concurrency-1 run: <= 1.15.
#     The floor leaves out what byok must do besides KMS calls:
#     process start-up, the HSM (login, known-answer test, generate, wrap), the custodians'
#     approval signatures on their tokens and the signed, fsynced transcript records.
#
# Per-run figures are printed as they come, then a summary. Figures are kept in
# docs/performance.md. Everything is torn down on exit (the proxies, then testenv down).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
[[ $runs =~ ^[1-9][0-9]*$ ]] || {
	echo "usage: benches/fleet.sh [RUNS]" >&2
	exit 2
}

export CARGO_TARGET_DIR=${BYOK_BENCH_TARGET_DIR:-/tmp/bench-target}
cargo build --release --bin byok >&2
bin=$CARGO_TARGET_DIR/release/byok

dir=
proxy_pids=()
cleanup() {
	local p
	for p in "${proxy_pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [[ -n $dir ]]; then scripts/testenv down "$dir" >&2; fi
}
trap cleanup EXIT
eval "$(BYOK_BIN=$bin scripts/testenv up)"
dir=$BYOK_TESTENV_DIR
# shellcheck disable=SC1091
source "$dir/pins.env"
localstack=$AWS_ENDPOINT_URL_KMS
work=$dir/fleet
mkdir -p "$work"

die() {
	printf 'fleet.sh: %s\n' "$*" >&2
	exit 1
}

# start_proxy NAME ARGS...: scripts/kms-proxy in front of LocalStack, logging every request to
# $work/proxy-NAME.log; sets proxy_url and proxy_pid.
start_proxy() {
	local name=$1 out=$work/proxy-$1.out first= i
	shift
	proxy_log=$work/proxy-$name.log
	: >"$proxy_log"
	: >"$out"
	scripts/kms-proxy --upstream "$localstack" --log "$proxy_log" "$@" >"$out" 2>&1 &
	proxy_pid=$!
	proxy_pids+=("$proxy_pid")
	for ((i = 0; i < 100; i++)); do
		IFS= read -r first <"$out" || true
		if [[ $first == "listening on "* ]]; then
			proxy_url=${first#listening on }
			return
		fi
		kill -0 "$proxy_pid" 2>/dev/null || die "kms-proxy exited: $(cat "$out")"
		sleep 0.1
	done
	die "kms-proxy did not start: $(cat "$out")"
}

stop_proxy() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# ceremony FILE N [fast]: an N-target ceremony file with fresh aliases; with `fast`,
# [kms.rates] raised so that byok's pacing does not bind.
ceremony() { # FILE N RATES ENDPOINT
	local file=$1 n=$2 endpoint=$4 prefix=b$RANDOM$RANDOM services
	services=$(seq 0 $((n - 1)) | sed 's/.*/"s&"/' | paste -sd, - | sed 's/,/, /g')
	cat >"$file" <<EOF
[ceremony]
id = "fleet-bench-$prefix"
description = "benches/fleet.sh: $n targets"
operator = "Bench Operator"

[hsm]
module_env = "BYOK_PKCS11_MODULE"
token_label = "byok-hsm"
audit_key_label = "byok-audit"
audit_key_sha256 = "$BYOK_AUDIT_KEY_SHA256"

[kms]
region = "us-east-1"
endpoint = "$endpoint"
EOF
	if [[ ${3:-} == fast ]]; then
		cat >>"$file" <<EOF

[kms.rates]
GetParametersForImport = 1000
ImportKeyMaterial = 1000
CreateKey = 1000
CreateAlias = 1000
EOF
	fi
	cat >>"$file" <<EOF

[targets]
services = [$services]
environments = ["e"]
key = "alias/$prefix-{service}-{environment}"
create = true
description = "{service} data, {environment}"
tags = { service = "{service}", environment = "{environment}" }

[import]
wrapping_algorithm = "RSAES_OAEP_SHA_1"
wrapping_key_spec = "RSA_2048"
wrap = "hsm"
expiration = "KEY_MATERIAL_DOES_NOT_EXPIRE"

[dual_control]
quorum = 2

[[custodian]]
name = "Alice"
token_label = "cust-alice"
key_label = "byok-approval"
public_key_sha256 = "$BYOK_CUSTODIAN_ALICE_SHA256"

[[custodian]]
name = "Bob"
token_label = "cust-bob"
key_label = "byok-approval"
public_key_sha256 = "$BYOK_CUSTODIAN_BOB_SHA256"

[[custodian]]
name = "Carol"
token_label = "cust-carol"
key_label = "byok-approval"
public_key_sha256 = "$BYOK_CUSTODIAN_CAROL_SHA256"
EOF
}

# The HSM PIN; Alice and Bob approve the plan; Alice and Carol approve the import.
export ANSWERS="$BYOK_HSM_USER_PIN
Alice
yes
$BYOK_CUSTODIAN_ALICE_PIN
Bob
yes
$BYOK_CUSTODIAN_BOB_PIN
Alice
yes
$BYOK_CUSTODIAN_ALICE_PIN
Carol
yes
$BYOK_CUSTODIAN_CAROL_PIN
"
LOCALSTACK_PID=$(<"$dir/localstack.pid")
export BIN=$bin LOCALSTACK_PID

# one NAME N fast|default ENDPOINT [byok run options...]: writes the ceremony file, runs it with
# KMS at ENDPOINT, verifies the transcript; prints "cpu_ms wall_ms localstack_cpu_ms": byok's
# user + sys CPU time (the growth of getrusage(RUSAGE_CHILDREN) across the run, so that only the
# byok child counts: python3 may be a pyenv shim whose own children are already in
# RUSAGE_CHILDREN when the script starts), the wall time from spawn to exit, and the CPU time
# LocalStack used meanwhile (/proc/PID/stat). byok's output goes to $work/NAME.out.
one() {
	local name=$1 n=$2 rates=$3 endpoint=$4 result
	shift 4
	ceremony "$work/$name.toml" "$n" "$rates" "$endpoint"
	result=$(AWS_ENDPOINT_URL_KMS=$endpoint AWS_ENDPOINT_URL_STS=$endpoint python3 - "$work/$name.toml" "$work/$name.jsonl" \
		"$work/$name.out" "$@" <<'PY'
import os, resource, subprocess, sys, time
file, transcript, out = sys.argv[1:4]
def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
def cpu_localstack():
    with open(f"/proc/{os.environ['LOCALSTACK_PID']}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
before, ls_before = cpu_children(), cpu_localstack()
start = time.monotonic()
with open(out, "wb") as f:
    p = subprocess.run([os.environ["BIN"], "run", file, "--transcript", transcript, *sys.argv[4:]],
                       input=os.environ["ANSWERS"].encode(), stdout=f, stderr=subprocess.STDOUT)
wall = (time.monotonic() - start) * 1000
cpu = (cpu_children() - before) * 1000
ls = (cpu_localstack() - ls_before) * 1000
if p.returncode != 0:
    sys.exit(f"byok run {file} exited {p.returncode}; its output is in {out}")
print(round(cpu), round(wall), round(ls))
PY
	) || die "ceremony $name failed: $(tail -n 5 "$work/$name.out")"
	"$bin" verify "$work/$name.jsonl" --audit-key-sha256 "$BYOK_AUDIT_KEY_SHA256" >/dev/null ||
		die "transcript $work/$name.jsonl does not verify"
	printf '%s\n' "$result"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {print lo "-" hi}'; }
calc() { awk "BEGIN {printf \"%.${2:-2}f\", $1}"; }
verdict() { if awk "BEGIN {exit !($1)}"; then echo "meets the target"; else echo "MISSES the target"; fi; }

floor_py=${BYOK_LOCALSTACK_PYTHON:-$HOME/.cache/byok/localstack-venv/bin/python}
others=$(pgrep -fc 'localstack\.runtime\.main' || true)
load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)

# Warm-up (untimed): the first ceremony and the first boto3 client pay for lazy start-up.
one warmup 2 fast "$localstack" >/dev/null
"$floor_py" benches/floor_boto3.py 2 >/dev/null

echo "== 1. byok CPU per target (LocalStack directly, rates raised) =="
cpu20s=() cpu1s=() walls20=() walls1=()
for ((r = 1; r <= runs; r++)); do
	res=$(one "cpu20-$r" 20 fast "$localstack")
	read -r cpu20 wall20 _ <<<"$res"
	res=$(one "cpu1-$r" 1 fast "$localstack")
	read -r cpu1 wall1 _ <<<"$res"
	printf 'run %d: 20 targets cpu %4d ms (wall %5d ms); 1 target cpu %3d ms (wall %4d ms); (cpu20-cpu1)/19 = %s ms\n' \
		"$r" "$cpu20" "$wall20" "$cpu1" "$wall1" "$(calc "($cpu20 - $cpu1) / 19")"
	cpu20s+=("$cpu20") cpu1s+=("$cpu1") walls20+=("$wall20") walls1+=("$wall1")
done
cpu20=$(median "${cpu20s[@]}") cpu1=$(median "${cpu1s[@]}")
marginal=$(calc "($cpu20 - $cpu1) / 19") per20=$(calc "$cpu20 / 20")

echo "== 2. concurrency (kms-proxy --delay-ms 50, rates raised, 20 targets) =="
start_proxy delay50 --delay-ms 50
delay_url=$proxy_url delay_log=$proxy_log
c4s=() c1s=() ls4s=() ls1s=()
for ((r = 1; r <= runs; r++)); do
	res=$(one "c4-$r" 20 fast "$delay_url" --kms-concurrency 4)
	read -r _ c4 ls4 <<<"$res"
	res=$(one "c1-$r" 20 fast "$delay_url" --kms-concurrency 1)
	read -r _ c1 ls1 <<<"$res"
	printf 'run %d: --kms-concurrency 4 wall %5d ms; --kms-concurrency 1 wall %5d ms; ratio %s (LocalStack CPU %d / %d ms)\n' \
		"$r" "$c4" "$c1" "$(calc "$c1 / $c4")" "$ls4" "$ls1"
	c4s+=("$c4") c1s+=("$c1") ls4s+=("$ls4") ls1s+=("$ls1")
done
stop_proxy "$proxy_pid"
c4=$(median "${c4s[@]}") c1=$(median "${c1s[@]}")
conc_ratio=$(calc "$c1 / $c4")
delay_calls=$(($(grep -c . "$delay_log" || true) / (2 * runs)))

echo "== 3. quotas (kms-proxy --default-quotas, byok's default rates, 30 targets) =="
eta=$(ceremony "$work/eta.toml" 30 default "$localstack" && "$bin" check "$work/eta.toml" | grep '^ETA' || true)
q_walls=() q_throttles=()
for ((r = 1; r <= runs; r++)); do
	start_proxy "quota-$r" --default-quotas
	res=$(one "quota-$r" 30 default "$proxy_url")
	read -r _ qw _ <<<"$res"
	stop_proxy "$proxy_pid"
	throttles=$(grep -c ' throttled$' "$proxy_log" || true)
	by_op=$(awk '$3 == "throttled" {n[$2]++} END {for (o in n) printf "%s %d, ", o, n[o]}' "$proxy_log")
	# Where the time goes: per operation, when its first and last answered call were logged
	# (after LocalStack's answer), in seconds from the first call.
	phases=$(awk 'NR == 1 {t0 = $1} $3 != "throttled" {if (!($2 in a)) {a[$2] = $1 - t0; o[++k] = $2}; b[$2] = $1 - t0}
		END {for (i = 1; i <= k; i++) printf "%s %.1f-%.1f, ", o[i], a[o[i]], b[o[i]]}' "$proxy_log")
	printf 'run %d: wall %5d ms, ratio to 29 s %s, throttled %d (%s)\n' "$r" "$qw" \
		"$(calc "$qw / 29000")" "$throttles" "${by_op%, }"
	printf '       first-last answer per operation, s: %s\n' "${phases%, }"
	q_walls+=("$qw") q_throttles+=("$throttles")
done
qwall=$(median "${q_walls[@]}")
q_ratio=$(calc "$qwall / 29000")
q_thr=$(median "${q_throttles[@]}")

echo "== 4. KMS floor (LocalStack directly, rates raised, 10 targets) =="
f1s=() f4s=() floors=()
for ((r = 1; r <= runs; r++)); do
	res=$(one "floor-c1-$r" 10 fast "$localstack" --kms-concurrency 1)
	read -r _ f1 _ <<<"$res"
	res=$(one "floor-c4-$r" 10 fast "$localstack")
	read -r _ f4 _ <<<"$res"
	res=$(AWS_ENDPOINT_URL_KMS=$localstack "$floor_py" benches/floor_boto3.py 10)
	read -r _ floor _ _ <<<"$res"
	printf 'run %d: byok --kms-concurrency 1 wall %5d ms; default (4) %5d ms; floor_boto3.py %5d ms\n' \
		"$r" "$f1" "$f4" "$floor"
	f1s+=("$f1") f4s+=("$f4") floors+=("$floor")
done
f1=$(median "${f1s[@]}") f4=$(median "${f4s[@]}") floor=$(median "${floors[@]}")
f1_ratio=$(calc "$f1 / $floor") f4_ratio=$(calc "$f4 / $floor")

cat <<EOF

== summary: median of $runs runs, $(date -u +%Y-%m-%d), $(nproc) CPUs, byok $("$bin" --version | cut -d ' ' -f 2) ==
machine: load average $load_before at the start, $(cut -d ' ' -f 1-3 /proc/loadavg) at the end; LocalStack processes other than this one: $((others - 1))
1. byok CPU per target (20 vs 1 target, LocalStack directly, rates raised, --kms-concurrency 4):
     cpu20 $cpu20 ms ($(range "${cpu20s[@]}")), cpu1 $cpu1 ms ($(range "${cpu1s[@]}"))
     marginal (cpu20 - cpu1) / 19 = $marginal ms per target; cpu20 / 20 = $per20 ms per target
     target <= 5 ms per target: the marginal cost $(verdict "$marginal <= 5")
     (wall: 20 targets $(median "${walls20[@]}") ms, 1 target $(median "${walls1[@]}") ms)
2. concurrency (kms-proxy --delay-ms 50, 20 targets, $delay_calls KMS calls each):
     --kms-concurrency 4: $c4 ms ($(range "${c4s[@]}")); --kms-concurrency 1: $c1 ms ($(range "${c1s[@]}"))
     ratio c1/c4 = $conc_ratio; target >= 3: $(verdict "$conc_ratio >= 3")
     LocalStack's own CPU time per run: $(median "${ls4s[@]}") ms (concurrency 4), $(median "${ls1s[@]}") ms (concurrency 1)
3. quotas (kms-proxy --default-quotas, byok's default rates, 30 targets):
     wall $qwall ms ($(range "${q_walls[@]}")) vs the GetParametersForImport floor 29000 ms: ratio $q_ratio; target <= 1.1: $(verdict "$q_ratio <= 1.1")
     every run succeeded (no throttling error reached the operator); throttled calls that byok
     retried: median $q_thr (per run: ${q_throttles[*]})
     byok check on the same file: ${eta:-no ETA line}
4. KMS floor (10 targets, LocalStack directly, rates raised):
     floor_boto3.py: $floor ms ($(range "${floors[@]}"))
     byok --kms-concurrency 1: $f1 ms ($(range "${f1s[@]}")), ratio $f1_ratio; target <= 1.15: $(verdict "$f1_ratio <= 1.15")
     byok --kms-concurrency 4: $f4 ms ($(range "${f4s[@]}")), ratio $f4_ratio
     (the floor leaves out process start-up, the HSM work, the approvals' signatures on the
     custodians' tokens and the signed, fsynced transcript records, which byok must do)
EOF
