#!/usr/bin/env bash
# benches/wrap.sh [RUNS]
#
# Time per wrapping algorithm inside SoftHSM2 and inside kryoptic (benches/wrap.rs), release
# build: the known-answer test, and a ceremony's generate + KCV + wrap under RSA-4096 + destroy.
# Makes throwaway token stores in a temporary directory; needs `scripts/testenv install`.
# Figures are kept in docs/performance.md.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
export BYOK_BENCH_RUNS=${1:-200}

scripts/testenv install >&2
cargo build --release --bench wrap >&2
bench=$(find target/release/deps -maxdepth 1 -type f -executable -name 'wrap-*' -printf '%T@ %p\n' |
	sort -n | tail -n 1 | cut -d ' ' -f 2)
[[ -x $bench ]] || {
	echo "wrap.sh: no benchmark binary under target/release/deps" >&2
	exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
pin=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ' | cut -c1-8)
pin=${pin}00000000
pin=${pin:0:8}
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$tmp/rsa.pem" 2>/dev/null
openssl pkey -in "$tmp/rsa.pem" -pubout -outform DER -out "$tmp/rsa.der"
export BYOK_BENCH_PIN=$pin BYOK_BENCH_SPKI=$tmp/rsa.der

# SoftHSM2
mkdir -p "$tmp/softhsm/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$tmp/softhsm/tokens" >"$tmp/softhsm/softhsm2.conf"
SOFTHSM2_CONF=$tmp/softhsm/softhsm2.conf softhsm2-util --init-token --free --label byok-hsm \
	--pin "$pin" --so-pin "$pin" >/dev/null
SOFTHSM2_CONF=$tmp/softhsm/softhsm2.conf BYOK_BENCH_MODULE=/usr/lib/softhsm/libsofthsm2.so "$bench"

# kryoptic
module=${BYOK_CACHE:-$HOME/.cache/byok}/kryoptic-1.5.4/libkryoptic_pkcs11.so
conf=$(BYOK_KRYOPTIC_MODULE=$module scripts/kryoptic-tokens "$tmp/kryoptic" "byok-hsm:$pin:$pin" 2>/dev/null)
KRYOPTIC_CONF=$conf BYOK_BENCH_MODULE=$module "$bench"
