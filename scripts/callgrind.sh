#!/usr/bin/env bash
# Instructions per request of the bare hyper proxy and of switchboard, counted by callgrind.
# Instruction counts do not depend on what else runs on the machine, so unlike wall-clock
# benches they are repeatable on a shared, noisy VM.
#
#   scripts/callgrind.sh [N1] [N2]          # defaults: 200 1200
#
# Environment:
#   VARIANTS  request shapes (default "nonstream_1k nonstream_32k stream_1k")
#   MODES     proxies (default "bare-proxy switchboard"); besides the bench_server modes, the
#             shipped binary (`switchboard`, release) with examples/gateway.toml routed to the
#             bench upstream: `gateway` (as shipped: cache on, so every measured request is a
#             HIT, default logging), `gateway-nolog` (RUST_LOG=off), `gateway-miss` (the cache
#             off, every request forwarded), `gateway-miss-nolog`; a `-nodb` suffix runs without
#             the request log (`[log]` of the example config: a fresh SQLite file per mode under
#             OUT otherwise)
#   WARMUP    requests before the first phase of each variant (default 50)
#   OUT       where the callgrind dumps go (default $CARGO_TARGET_DIR/callgrind, or
#             target/callgrind); each kept dump is named MODE.VARIANT.N.out, e.g. for
#             `callgrind_annotate OUT/switchboard.nonstream_1k.1200.out`
#
# What it does: builds the bench_* programs (bench targets using `switchboard::bench_support`,
# so `--features bench-support`, in the bench profile: release settings); starts bench_upstream
# (native, not measured); for each mode starts bench_server under `valgrind --tool=callgrind`
# (current-thread runtime); for each variant: warms up, then `callgrind_control -z` (zero), N1
# sequential requests over one keep-alive connection (bench_client), `callgrind_control --dump`;
# zero, N2 requests, dump. The figure is (I(N2) - I(N1)) / (N2 - N1): the fixed costs of a phase
# (accepting the client's connection, its first checked request, the close) cancel out. Only
# the proxy process is counted, not the client or the upstream. See BENCHMARKS.md.
set -euo pipefail
shopt -s inherit_errexit

N1=${1:-200}
N2=${2:-1200}
VARIANTS=${VARIANTS:-"nonstream_1k nonstream_32k stream_1k"}
MODES=${MODES:-"bare-proxy switchboard"}
WARMUP=${WARMUP:-50}

if [ "$N2" -le "$N1" ]; then
    echo "N2 ($N2) must be larger than N1 ($N1)" >&2
    exit 2
fi
for tool in valgrind callgrind_control; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool not found; install valgrind (apt-get install -y valgrind)" >&2
        exit 1
    fi
done

cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/callgrind}

# Bench targets have hashed file names: take their paths from cargo's JSON messages.
BUILD=$(cargo bench --no-run --features bench-support --message-format=json-render-diagnostics \
    --bench bench_upstream --bench bench_server --bench bench_client)
program() {
    local path
    path=$(printf '%s\n' "$BUILD" |
        sed -n 's|.*"executable":"\([^"]*/'"$1"'-[0-9a-f]*\)".*|\1|p' | tail -n 1)
    if [ -z "$path" ]; then
        echo "cargo bench --no-run did not report the $1 executable" >&2
        return 1
    fi
    printf '%s\n' "$path"
}
if [[ " $MODES " == *" gateway"* ]]; then
    cargo build --release --bin switchboard >&2
fi
GATEWAY_BIN=$TARGET_DIR/release/switchboard
UPSTREAM_BIN=$(program bench_upstream)
SERVER_BIN=$(program bench_server)
CLIENT_BIN=$(program bench_client)

rm -rf "$OUT"
mkdir -p "$OUT"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# Waits (up to $2 seconds) for a process to print its address as the first line of $1 (or,
# for the gateway binary, on its `switchboard listening on http://ADDR` line).
wait_addr() {
    local file=$1 secs=$2 i line
    for ((i = 0; i < secs * 10; i++)); do
        # `|| true`: the file may not exist yet (the process opens it as it starts).
        line=$({ sed -n 's|^switchboard listening on http://||p' "$file" 2>/dev/null || true; } |
            head -n 1)
        if [ -n "$line" ]; then
            printf '%s\n' "$line"
            return 0
        fi
        if [ -s "$file" ] && ! grep -q ' ' <(head -n 1 "$file"); then
            head -n 1 "$file"
            return 0
        fi
        sleep 0.1
    done
    echo "no address in $file after ${secs}s" >&2
    return 1
}

# The instruction count of a callgrind dump.
instructions() {
    awk '/^summary:/ { print $2; found = 1; exit } END { if (!found) exit 1 }' "$1"
}

"$UPSTREAM_BIN" --listen 127.0.0.1:0 >"$OUT/upstream.addr" &
PIDS+=($!)
UPSTREAM=$(wait_addr "$OUT/upstream.addr" 10)

# Runs $2 requests of variant $1 against the server ($mode, $server, $addr), then dumps; prints
# the instructions of the phase. Runs in a subshell: it keeps no state.
phase() {
    local variant=$1 n=$2 dump
    # Let the server settle (close the previous connection) before zeroing.
    sleep 0.5
    callgrind_control -z "$server" >/dev/null 2>&1
    "$CLIENT_BIN" --target "$addr" --variant "$variant" --requests "$n" >/dev/null
    # Let the server finish closing the client's connection inside the phase.
    sleep 0.5
    callgrind_control --dump "$server" >/dev/null 2>&1
    # Each dump is $mode.out.<k>; earlier ones were renamed, so exactly one matches.
    dump=$(ls "$OUT/$mode.out".*)
    mv "$dump" "$OUT/$mode.$variant.$n.out"
    instructions "$OUT/$mode.$variant.$n.out"
}

declare -A PER_REQUEST
for mode in $MODES; do
    # Uncompressed names make every dump readable on its own by callgrind_annotate.
    CG=(valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$OUT/$mode.out")
    case $mode in
    gateway*)
        config=$OUT/$mode.toml
        cp examples/gateway.toml "$config"
        if [[ $mode == *-miss* ]]; then
            sed -i 's/^enabled = true$/enabled = false/' "$config"
        fi
        # A fresh request log per mode (its file under OUT), or none for `-nodb`.
        rm -f "$OUT/$mode.db" "$OUT/$mode.db-wal" "$OUT/$mode.db-shm"
        if [[ $mode == *-nodb* ]]; then
            sed -i '/^path = "switchboard.db"$/d' "$config"
        else
            sed -i "s|^path = \"switchboard.db\"\$|path = \"$OUT/$mode.db\"|" "$config"
        fi
        log=info
        if [[ $mode == *-nolog ]]; then log=off; fi
        RUST_LOG=$log OPENAI_API_KEY=k OPENAI_BASE_URL="http://$UPSTREAM/v1" NO_COLOR=1 \
            "${CG[@]}" "$GATEWAY_BIN" --config "$config" --listen 127.0.0.1:0 \
            >"$OUT/$mode.addr" 2>"$OUT/$mode.valgrind.log" &
        ;;
    *)
        "${CG[@]}" "$SERVER_BIN" --mode "$mode" --upstream "http://$UPSTREAM" \
            >"$OUT/$mode.addr" 2>"$OUT/$mode.valgrind.log" &
        ;;
    esac
    server=$!
    PIDS+=("$server")
    addr=$(wait_addr "$OUT/$mode.addr" 120)

    for variant in $VARIANTS; do
        "$CLIENT_BIN" --target "$addr" --variant "$variant" --requests "$WARMUP" >/dev/null
        i1=$(phase "$variant" "$N1")
        i2=$(phase "$variant" "$N2")
        per=$(( (i2 - i1) / (N2 - N1) ))
        PER_REQUEST[$mode.$variant]=$per
        printf '%-12s %-14s I(%d) = %d, I(%d) = %d: %d instructions/request\n' \
            "$mode" "$variant" "$N1" "$i1" "$N2" "$i2" "$per"
    done

    kill -INT "$server"
    wait "$server" 2>/dev/null || true
done

echo
echo "instructions per request (callgrind, (I($N2) - I($N1)) / ($N2 - $N1), server process only)"
printf '%-14s' "variant"
for mode in $MODES; do printf ' %14s' "$mode"; done
echo
for variant in $VARIANTS; do
    printf '%-14s' "$variant"
    for mode in $MODES; do printf ' %14s' "${PER_REQUEST[$mode.$variant]}"; done
    echo
done
if [[ " $MODES " == *" bare-proxy "* ]]; then
    echo
    echo "× bare proxy"
    for variant in $VARIANTS; do
        printf '%-14s' "$variant"
        for mode in $MODES; do
            awk -v s="${PER_REQUEST[$mode.$variant]}" -v b="${PER_REQUEST[bare-proxy.$variant]}" \
                'BEGIN { printf " %14.2f", s / b }'
        done
        echo
    done
fi
echo "dumps: $OUT"
