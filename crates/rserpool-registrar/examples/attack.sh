#!/usr/bin/env bash
# Run one attack of examples/attack.rs against a registrar process and
# print what a pool user got, the registrar's memory and its log volume.
# Give the rsp binary to attack, so an older build can be compared:
#
#   cargo build --release -p rsp && cargo build --release -p rserpool-registrar --example attack
#   crates/rserpool-registrar/examples/attack.sh target/release/rsp reports
#   crates/rserpool-registrar/examples/attack.sh target/release/rsp trickle
#   crates/rserpool-registrar/examples/attack.sh target/release/rsp stall 11000
#   crates/rserpool-registrar/examples/attack.sh target/release/rsp identity 10000 30
#
# reports and trickle run alone for 20 s / 60 s. stall and identity run
# the attacker (niced, so that it does not starve the pool user of this
# machine's cores) for COUNT connections, wait RAMP seconds (12) and then
# run a pool user in its own process for 20 s.
set -euo pipefail
BIN=$1 SCEN=$2 COUNT=${3:-11000} RAMP=${4:-12}
root="$(cd "$(dirname "$0")/../../.." && pwd)"
RSP=$root/target/release/rsp
ATT=$root/target/release/examples/attack
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
psk=()
for n in pe-a pu-1 pu-2 pu-3 pu-4 flooder; do
    "$RSP" keygen psk "$n" -o "$dir/$n.key" >/dev/null
    psk+=(--psk-file "$dir/$n.key")
done
ulimit -n "$(ulimit -Hn)"
"$BIN" --log info registrar --listen 127.0.0.1:3864 "${psk[@]}" >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$dir/out" && break; sleep 0.1; done
rss() { awk "/$1/{print \$2}" "/proc/$pid/status"; }
start=$(rss VmRSS)
attack=("$ATT" "$SCEN" --registrar 127.0.0.1:3864 --keys "$dir")
case $SCEN in
reports) "${attack[@]}" --seconds 20 ;;
trickle) "${attack[@]}" --seconds 60 ;;
stall | identity)
    nice -n 19 "${attack[@]}" --count "$COUNT" --seconds $((RAMP + 30)) >"$dir/att" 2>&1 &
    apid=$!
    sleep "$RAMP"
    "$ATT" pu --registrar 127.0.0.1:3864 --keys "$dir" --seconds 20
    kill "$apid"
    wait "$apid" 2>/dev/null || true
    tail -1 "$dir/att"
    ;;
*) echo "unknown scenario $SCEN" >&2; exit 2 ;;
esac
sleep 3
echo "registrar: RSS $start KiB at start, peak $(rss VmHWM) KiB, $(rss VmRSS) KiB 3 s after;" \
    "$(wc -l <"$dir/err") log lines ($(wc -c <"$dir/err") bytes)"
