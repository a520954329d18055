#!/usr/bin/env bash
# Fuzz one target for a while (libFuzzer through cargo-fuzz):
#
#   scripts/fuzz.sh TARGET [SECONDS] [LIBFUZZER-FLAG...]   fuzz TARGET (default 60 s)
#   scripts/fuzz.sh list                                     the targets
#   scripts/fuzz.sh build                                    build every target, run none
#   scripts/fuzz.sh seed [TARGET...]                         (re)build the seed corpora only
#
# Targets: compile (definition parser and validator), expr (paths, intrinsics, templates),
# interpret (the interpreter on fuzzed definitions, inputs and outcomes), api (the gRPC API's
# requests: protobuf decoding, field checks, JSON payloads, metadata).
#
# Works on a fresh machine with the stable Rust toolchain: installs cargo-fuzz if it is
# missing, and sets RUSTC_BOOTSTRAP=1 because cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address, coverage instrumentation) that a stable compiler accepts only then.
# The fuzz crate is its own workspace with its own target directory (fuzz/target), so none of
# this touches the main build.
#
# Corpora grow in fuzz/corpus/TARGET (seeded from saga-definitions/ and, when present, the
# conformance corpus at ../shared/conformance or $SAGAFLOW_CONFORMANCE); crashes land in
# fuzz/artifacts/TARGET and the script exits non-zero. Reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz TARGET fuzz/artifacts/TARGET/crash-...
# then add a regression test (orchestrator/language/tests/bad_input.rs or the API's tests).
# On a shared machine, run it under `nice -n 19`.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(compile expr interpret api)
export RUSTC_BOOTSTRAP=1

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (once)..." >&2
    cargo install cargo-fuzz --locked
  fi
}

# Seed corpora: real definitions, their expressions and inputs, and a few API requests.
seed() {
  local conformance="${SAGAFLOW_CONFORMANCE:-../shared/conformance}"
  if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: seeding compile from saga-definitions/ only" >&2
    mkdir -p fuzz/corpus/compile
    cp saga-definitions/*.asl.json fuzz/corpus/compile/ 2>/dev/null || true
    return
  fi
  python3 - "$conformance" "$@" <<'PY'
import hashlib, json, os, sys, glob

conformance, wanted = sys.argv[1], set(sys.argv[2:]) or {"compile", "expr", "interpret", "api"}
MAX = 64 * 1024  # larger seeds only slow the fuzzer down

def put(target, data):
    if target not in wanted or len(data) > MAX:
        return
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join("fuzz", "corpus", target)
    os.makedirs(folder, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)

cases = []  # (definition text, input value)
for path in sorted(glob.glob("saga-definitions/*.asl.json")):
    with open(path, encoding="utf-8") as f:
        cases.append((f.read(), {"orderId": "o-1", "amountCents": 2500, "items": [{"sku": "SKU-1", "quantity": 1}]}))
for path in sorted(glob.glob(os.path.join(conformance, "cases", "*", "*.json"))):
    with open(path, encoding="utf-8") as f:
        case = json.load(f)
    cases.append((json.dumps(case["definition"], indent=2), case.get("input")))

def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)

def templates(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("Parameters", "ResultSelector", "ItemSelector", "Assign", "Arguments") and isinstance(v, dict):
                yield v
            yield from templates(v)
    elif isinstance(value, list):
        for v in value:
            yield from templates(v)

for text, given in cases:
    put("compile", text)
    compact_input = json.dumps(given, separators=(",", ":"))
    put("interpret", text.encode() + b"\0" + compact_input.encode() + b"\0" + bytes([0, 1, 130, 170, 200, 230]))
    put("api", b"J" + compact_input.encode())
    definition = json.loads(text)
    for s in set(strings(definition)):
        if s.startswith("$") or s.startswith("States."):
            put("expr", s + "\n" + compact_input)
    for t in templates(definition):
        put("expr", "\n" + json.dumps(t, separators=(",", ":")))

# API requests as protobuf, so the fuzzer starts from well-formed messages.
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def field(number, value):
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return varint(number << 3) + varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value

def message(*fields):
    return b"".join(field(n, v) for n, v in fields)

item = message((1, "SKU-RED-MUG"), (2, 2), (3, 1250))
address = message((1, "1 Main St"), (2, "Springfield"), (3, "12345"), (4, "US"))
order = message((1, "o-1"), (2, "c-1"), (3, item), (3, item), (4, "USD"), (5, "tok_ok"), (6, address))
put("api", b"O" + order)
put("api", b"O" + message((1, "o-2"), (2, "fraud-1"), (3, message((1, "SKU"), (2, 4294967295), (3, 9223372036854775807))), (4, "EUR")))
start = message((1, "order"), (2, 1), (3, '{"orderId":"o-1","items":[{"sku":"A","quantity":1}]}'), (4, "0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d"), (6, "key-1"))
put("api", b"S" + start)
put("api", b"R" + message((1, "order"), (2, '{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}')))
for ref in ("0190b4d2", "0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d", "not-an-id"):
    put("api", b"I" + ref.encode())
for timeout in ("100m", "5S", "99999999H", "1n"):
    put("api", b"T" + timeout.encode())
put("api", b"P" + b"1700000000000000:0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d")
PY
}

build() {
  ensure_cargo_fuzz
  # Debug assertions on: an arithmetic overflow is a crash, not a silent wrap.
  cargo fuzz build --fuzz-dir fuzz --debug-assertions "$@"
}

case "${1:-}" in
  "" | -h | --help)
    sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  list)
    printf '%s\n' "${TARGETS[@]}"
    ;;
  build)
    build
    ;;
  seed)
    shift
    seed "$@"
    ;;
  *)
    target="$1"
    seconds="${2:-60}"
    shift
    [ $# -gt 0 ] && shift
    if [[ ! " ${TARGETS[*]} " =~ " ${target} " ]]; then
      echo "unknown target '${target}'; one of: ${TARGETS[*]}" >&2
      exit 2
    fi
    seed "$target"
    build "$target"
    # -timeout: an input that takes 60 s is a hang; -rss_limit_mb: memory without bound is a bug.
    cargo fuzz run --fuzz-dir fuzz --debug-assertions "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 "$@"
    ;;
esac
