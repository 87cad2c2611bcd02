#!/usr/bin/env bash
# benches/inventory.sh [RUNS] [KEYS]
#
# `byok inventory` over a region with many imported keys, against its KMS floor. One test
# environment (scripts/testenv up; no HSM keys are enrolled: the inventory talks to KMS only),
# seeded once with KEYS (default 1000) keys with Origin EXTERNAL, each with a tag, and two
# aliases on every 10th key (200 for 1000 keys: with one each, 100 aliases would fit the
# inventory's single ListAliases page of Limit 100 and paging would go untested); the key material is never imported (an inventory lists keys in any
# state). Seeding runs from the LocalStack venv's Python with a thread pool and is timed. Release
# build in /tmp/bench-target (BYOK_BENCH_TARGET_DIR). Each figure is the median of RUNS
# (default 3); a run measures both sides one after the other, in alternating order (floor first
# in odd runs, byok first in even ones) so that a drift of LocalStack's speed over the session
# weighs on both alike. One untimed warm-up of each comes first.
#
#  - byok: wall time of the whole process `byok inventory --region us-east-1 --format json
#    --concurrency 8`, from spawn to exit, measured in Python around subprocess.run (the
#    interpreter's own start-up is outside the clock). Its exit status must be 0, 10 or 11
#    (compliance classes: all three mean it ran fine), its stdout must parse as JSON whose
#    top-level `keys` array has exactly KEYS entries. Its user + sys CPU time is shown beside it
#    (getrusage(RUSAGE_CHILDREN) growth across the run, as in benches/fleet.sh).
#  - floor: benches/floor_inventory_boto3.py KEYS --concurrency 8: the same KMS calls (ListKeys
#    all pages, ListAliases all pages, then per key DescribeKey and for EXTERNAL keys
#    ListResourceTags and ListKeyRotations, at most 8 in flight) from one warm boto3 client,
#    SDK retries off, timed without process start-up. LocalStack answers ListKeyRotations
#    with InternalFailure (not yet emulated); byok and the floor both accept that.
#
# byok is measured twice per run: as shipped (paced to AWS's default quotas: ListResourceTags at
# byok's conservative 50/s bounds 1000 keys to at least 20 s, about what LocalStack takes
# anyway) and unpaced (a rotation policy whose [rates] raise every operation to 100,000/s: what
# byok itself costs beside the calls). Reports the medians and byok / floor for both. Target:
# <= 1.5 as shipped. The floor leaves out what byok must do besides the KMS calls: process
# start-up, the pacing, classifying each key and writing the JSON. LocalStack's own CPU time
# (/proc/PID/stat) during each measurement is shown beside it: it is one Python process that
# answers every call, on a 2-core machine it competes with whichever client runs, and it bounds
# what concurrency 8 can gain.
#
# BYOK_BENCH_FLOOR_ONLY=1 seeds and measures the floor only, without building or running byok
# (to check the environment and the floor before `byok inventory` exists). Without it, the
# script stops before starting anything if `byok inventory --help` fails. Per-run figures are
# printed as they come, then a summary. Everything is torn down on exit (testenv down).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
keys=${2:-1000}
[[ $runs =~ ^[1-9][0-9]*$ && $keys =~ ^[1-9][0-9]*$ ]] || {
	echo "usage: benches/inventory.sh [RUNS] [KEYS]" >&2
	exit 2
}
readonly concurrency=8

die() {
	printf 'inventory.sh: %s\n' "$*" >&2
	exit 1
}

floor_only=${BYOK_BENCH_FLOOR_ONLY:-}
bin=
if [[ -z $floor_only ]]; then
	export CARGO_TARGET_DIR=${BYOK_BENCH_TARGET_DIR:-/tmp/bench-target}
	cargo build --release --bin byok >&2
	bin=$CARGO_TARGET_DIR/release/byok
	"$bin" inventory --help >/dev/null 2>&1 ||
		die "$bin has no working \`inventory\` subcommand (\`byok inventory --help\` failed):
  this bench needs a byok with \`byok inventory\`; BYOK_BENCH_FLOOR_ONLY=1 measures the floor alone"
fi

dir=
cleanup() { if [[ -n $dir ]]; then scripts/testenv down "$dir" >&2; fi; }
trap cleanup EXIT
eval "$(scripts/testenv up)"
dir=$BYOK_TESTENV_DIR
work=$dir/inventory
mkdir -p "$work"
py=$BYOK_LOCALSTACK_PYTHON
LOCALSTACK_PID=$(<"$dir/localstack.pid")
export BIN=$bin LOCALSTACK_PID

# LocalStack's user + sys CPU time so far, in ms (fields 14 and 15 of /proc/PID/stat, counted
# after the command name, which may hold spaces).
clk_tck=$(getconf CLK_TCK)
localstack_cpu_ms() {
	local stat f
	stat=$(<"/proc/$LOCALSTACK_PID/stat")
	read -ra f <<<"${stat##*) }"
	echo $(((f[11] + f[12]) * 1000 / clk_tck))
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {print lo "-" hi}'; }
calc() { awk "BEGIN {printf \"%.${2:-2}f\", $1}"; }
verdict() { if awk "BEGIN {exit !($1)}"; then echo "meets the target"; else echo "MISSES the target"; fi; }

others=$(pgrep -fc 'localstack\.runtime\.main' || true)
load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)

# --- seeding: KEYS keys with Origin EXTERNAL, a tag each, two aliases on every 10th; prints
# "seconds aliases"
ls_before=$(localstack_cpu_ms)
seed=$("$py" - "$keys" <<'PY'
import sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config

n = int(sys.argv[1])
# Retries on (standard mode): seeding is set-up, not a measurement.
kms = boto3.client("kms", config=Config(retries={"mode": "standard"}, max_pool_connections=8))

def one(i):
    arn = kms.create_key(
        Origin="EXTERNAL",
        KeySpec="SYMMETRIC_DEFAULT",
        KeyUsage="ENCRYPT_DECRYPT",
        Description=f"benches/inventory.sh key {i}",
        Tags=[{"TagKey": "bench", "TagValue": f"inventory-{i}"}],
    )["KeyMetadata"]["Arn"]
    if i % 10:
        return 0
    for alias in (f"alias/inventory-bench-{i}", f"alias/inventory-bench-{i}-previous"):
        kms.create_alias(AliasName=alias, TargetKeyId=arn)
    return 2

start = time.monotonic()
with ThreadPoolExecutor(max_workers=8) as pool:
    aliases = sum(pool.map(one, range(n)))
print(f"{time.monotonic() - start:.1f} {aliases}")
PY
) || die "seeding $keys keys failed"
read -r seed_s seed_aliases <<<"$seed"
seed_ls=$(($(localstack_cpu_ms) - ls_before))
printf 'seeded %d EXTERNAL keys and %d aliases in %s s (LocalStack CPU %d ms)\n' \
	"$keys" "$seed_aliases" "$seed_s" "$seed_ls"

# floor: prints "wall_ms localstack_cpu_ms"; the floor's page counts go to $work/floor.err.
floor() {
	local out before wall k
	before=$(localstack_cpu_ms)
	out=$("$py" benches/floor_inventory_boto3.py "$keys" --concurrency "$concurrency" \
		2>>"$work/floor.err") || die "the floor failed: $(tail -n 5 "$work/floor.err")"
	read -r _ wall _ k _ _ _ _ <<<"$out"
	((k == keys)) || die "the floor listed $k keys, not $keys (a fresh environment holds only the seeded ones)"
	echo "$wall $(($(localstack_cpu_ms) - before))"
}

# A rotation policy that only raises every rate byok paces an inventory by.
unpaced=$work/unpaced.toml
printf '%s\n' 'version = 1' '[rates]' ListKeys=100000 ListAliases=100000 DescribeKey=100000 \
	ListResourceTags=100000 ListKeyRotations=100000 >"$unpaced"

# byok NAME [ARGS...]: prints "wall_ms cpu_ms localstack_cpu_ms"; stdout and stderr go to
# $work/NAME.json and $work/NAME.err.
byok() {
	"$py" - "$keys" "$work/$1.json" "$work/$1.err" "$concurrency" "${@:2}" <<'PY' || die "byok inventory ($1) failed"
import json, os, resource, subprocess, sys, time
keys, out, err, concurrency = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
extra = sys.argv[5:]
def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
def cpu_localstack():
    with open(f"/proc/{os.environ['LOCALSTACK_PID']}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
cmd = [os.environ["BIN"], "inventory", "--region", "us-east-1", "--format", "json",
       "--concurrency", concurrency] + extra
before, ls_before = cpu_children(), cpu_localstack()
start = time.monotonic()
with open(out, "wb") as o, open(err, "wb") as e:
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
wall = (time.monotonic() - start) * 1000
cpu = (cpu_children() - before) * 1000
ls = (cpu_localstack() - ls_before) * 1000
if p.returncode not in (0, 10, 11):
    sys.exit(f"{' '.join(cmd)} exited {p.returncode} (0, 10 or 11 expected); stderr in {err}")
try:
    with open(out) as f:
        doc = json.load(f)
except ValueError as x:
    sys.exit(f"byok inventory: stdout ({out}) is not JSON: {x}")
listed = doc.get("keys") if isinstance(doc, dict) else None
if not isinstance(listed, list):
    sys.exit(f"byok inventory: {out} has no top-level `keys` array")
if len(listed) != keys:
    sys.exit(f"byok inventory: {out} lists {len(listed)} keys, expected {keys}")
print(round(wall), round(cpu), round(ls))
PY
}

# Warm-up (untimed): LocalStack's first pass over every key, the first byok process.
floor >/dev/null
[[ -n $floor_only ]] || byok warmup --policy "$unpaced" >/dev/null

echo "== byok inventory --concurrency $concurrency (as shipped, and unpaced) vs floor_inventory_boto3.py, $keys keys =="
floors=() floor_lss=() walls=() cpus=() lss=() uwalls=()
for ((r = 1; r <= runs; r++)); do
	b_res='' u_res=''
	if ((r % 2 == 0)) && [[ -z $floor_only ]]; then
		b_res=$(byok "run-$r")
		u_res=$(byok "unpaced-$r" --policy "$unpaced")
	fi
	f_res=$(floor)
	if ((r % 2 == 1)) && [[ -z $floor_only ]]; then
		b_res=$(byok "run-$r")
		u_res=$(byok "unpaced-$r" --policy "$unpaced")
	fi
	read -r f_wall f_ls <<<"$f_res"
	read -r b_wall b_cpu b_ls <<<"${b_res:-- - -}"
	read -r u_wall _ _ <<<"${u_res:-- - -}"
	floors+=("$f_wall") floor_lss+=("$f_ls")
	if [[ -z $floor_only ]]; then
		walls+=("$b_wall") cpus+=("$b_cpu") lss+=("$b_ls") uwalls+=("$u_wall")
		printf 'run %d: floor %5d ms (LocalStack CPU %5d ms); byok %5d ms (its CPU %4d ms, LocalStack CPU %5d ms), unpaced %5d ms; ratios %s, %s\n' \
			"$r" "$f_wall" "$f_ls" "$b_wall" "$b_cpu" "$b_ls" "$u_wall" "$(calc "$b_wall / $f_wall")" "$(calc "$u_wall / $f_wall")"
	else
		printf 'run %d: floor %5d ms (LocalStack CPU %5d ms)\n' "$r" "$f_wall" "$f_ls"
	fi
done
floor_ms=$(median "${floors[@]}")
pages=$(tail -n 1 "$work/floor.err")

cat <<EOF

== summary: median of $runs runs, $keys keys, $(date -u +%Y-%m-%d), $(nproc) CPUs${bin:+, byok $("$bin" --version | cut -d ' ' -f 2)} ==
machine: load average $load_before at the start, $(cut -d ' ' -f 1-3 /proc/loadavg) at the end; LocalStack processes other than this one: $((others - 1))
seeding: $keys keys with Origin EXTERNAL, one tag each, $seed_aliases aliases, in $seed_s s (8 threads; LocalStack CPU $seed_ls ms)
floor (benches/floor_inventory_boto3.py $keys --concurrency $concurrency): $floor_ms ms ($(range "${floors[@]}")), LocalStack CPU $(median "${floor_lss[@]}") ms
     ${pages#floor_inventory_boto3: }
EOF
[[ -z $floor_only ]] || {
	echo "byok: not run (BYOK_BENCH_FLOOR_ONLY)"
	exit 0
}
wall=$(median "${walls[@]}")
ratio=$(calc "$wall / $floor_ms")
uwall=$(median "${uwalls[@]}")
cat <<EOF
byok inventory --concurrency $concurrency: $wall ms ($(range "${walls[@]}")), its CPU $(median "${cpus[@]}") ms, LocalStack CPU $(median "${lss[@]}") ms
byok inventory unpaced (--policy with [rates] at 100,000/s): $uwall ms ($(range "${uwalls[@]}")); ratio $(calc "$uwall / $floor_ms")
ratio byok (as shipped) / floor = $ratio; target <= 1.5: $(verdict "$ratio <= 1.5")
     (the floor leaves out process start-up, pacing, classification and the JSON output)
EOF
