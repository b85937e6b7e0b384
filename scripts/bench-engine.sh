#!/usr/bin/env bash
# Engine benchmarks for BENCHMARKS.md ("## Engine"), each figure next to a
# reference measured in the same run:
#   1. in-process signature verifications per second (benches/verify.rs,
#      criterion) for RSA 2048/3072/4096 and Ed25519, against `gpg --verify`
#      and `skopeo standalone-verify` of a signature of the same key type
#      (one process per signature, hyperfine);
#   2. scope lookup with 10 and 10,000 scopes (benches/scope.rs), the
#      10,000-scope time as a ratio of the 10-scope one;
#   3. the same signature through `imagegate standalone-verify` and
#      `skopeo standalone-verify` side by side (hyperfine, one run per key
#      type); target: the in-process verification >= 20x faster than
#      skopeo's per-signature time;
#   4. `imagegate verify` of 20 signed images in one process against
#      `skopeo copy --policy P docker://... dir:...` once per image, over a
#      local registry and lookaside server; target >= 5x. Both must accept
#      all 20 images in every run, else the script fails.
# It installs its Debian packages, builds the release binary, sets up keys,
# a registry and a lookaside server in a temporary directory, prints a
# summary table (Markdown) with the machine load at each measurement, and
# removes everything at the end.
#
#   scripts/bench-engine.sh                 full run (about 5 minutes)
#   scripts/bench-engine.sh --quick         short run (fewer samples)
#   scripts/bench-engine.sh --keep          keep the temporary directory
#   scripts/bench-engine.sh --out FILE      also write the summary to FILE
#   scripts/bench-engine.sh --quiet-wait SECS --max-busy PCT
#                                           before each measurement, wait for
#                                           the CPUs to be at most PCT % busy
#                                           at nice 0 (default 25), waiting
#                                           SECS at most over the whole run
#                                           (default 300, 0 with --quick)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

quick=false keep=false out="" quiet_wait="" max_busy=25
command_line="scripts/bench-engine.sh${*:+ $*}"
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=true ;;
    --keep) keep=true ;;
    --out) out=$2; shift ;;
    --quiet-wait) quiet_wait=$2; shift ;;
    --max-busy) max_busy=$2; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
  shift
done
if $quick; then
  : "${quiet_wait:=0}"
  verify_crit=(--warm-up-time 1 --measurement-time 2)
  scope_crit=(--warm-up-time 1 --measurement-time 1)
  standalone_runs=10 copy_runs=3
else
  : "${quiet_wait:=300}"
  verify_crit=(--warm-up-time 3 --measurement-time 15)
  scope_crit=(--warm-up-time 2 --measurement-time 5)
  standalone_runs=50 copy_runs=10
fi
IMAGES=20

ensure_apt_packages "${IMAGEGATE_APT_PACKAGES[@]}" hyperfine
ensure_rust

W=$(mktemp -d /tmp/imagegate-bench-engine.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  gpgconf --homedir "$W/gnupg" --kill all 2>/dev/null || true
  if $keep; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

log "building imagegate and the benchmarks (release)"
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release --locked
# The measured binary is this release build. `cargo bench` builds the
# binary again under its own profile into the same directory (with the
# dev-dependencies' features), so keep a copy of this one.
mkdir -p "$W/bin"
cp "$target_dir/release/imagegate" "$W/bin/imagegate"
IMAGEGATE="$W/bin/imagegate"
# The criterion executables are copied too and run directly: a `cargo
# bench` at measurement time would rebuild first if the sources changed
# meanwhile (other work goes on in this tree).
cargo bench --locked --no-run --bench verify --bench scope --message-format json-render-diagnostics \
  | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "bench" in m["target"]["kind"] and m.get("executable"):
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"] + "-bench")' "$W/bin"
{ [ -x "$W/bin/verify-bench" ] && [ -x "$W/bin/scope-bench" ]; } || die "the benchmark executables were not built"
# Criterion results of this run only (no comparison with older runs).
export CRITERION_HOME="$W/criterion"

# --- load -------------------------------------------------------------------
# CPU use over the next 2 seconds, all CPUs, as "ALL NORMAL": the percentage
# not idle, and the part of it not at a positive nice level. Work at nice 19
# (other agents' fuzzing) barely competes with a benchmark at nice 0, so
# the wait below looks at NORMAL; both are recorded.
cpu_busy() {
  python3 - <<'PY'
import time
def sample():
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return user + nice + system + idle + iowait + irq + softirq + steal, idle + iowait, nice
t0, i0, n0 = sample(); time.sleep(2); t1, i1, n1 = sample()
total = max(t1 - t0, 1)
print(round(100 * (1 - (i1 - i0) / total)), round(100 * (1 - (i1 - i0 + n1 - n0) / total)))
PY
}
# Waits for a quiet machine (at most --quiet-wait seconds over the whole
# run), then records the load under the measurement's name in loads.tsv.
quiet_left=$quiet_wait
quiet() {
  local name=$1 all normal
  read -r all normal < <(cpu_busy)
  while [ "$normal" -gt "$max_busy" ] && [ "$quiet_left" -gt 0 ]; do
    log "CPUs ${normal}% busy at nice 0 (want <= ${max_busy}%), waiting before $name"
    sleep 8; quiet_left=$((quiet_left - 10))
    read -r all normal < <(cpu_busy)
  done
  printf '%s\t%s\t%s\t%s\n' "$name" "$all" "$normal" "$(uptime | sed 's/.*load average: //')" >> "$W/loads.tsv"
  log "$name: CPUs ${all}% busy (${normal}% at nice 0), load average $(uptime | sed 's/.*load average: //')"
}

# --- keys and signatures ------------------------------------------------------
export GNUPGHOME="$W/gnupg"
mkdir -m 700 "$GNUPGHOME"
KEYS=(rsa2048 rsa3072 rsa4096 ed25519)
declare -A FPR
for k in "${KEYS[@]}"; do
  gpg --batch --quiet --passphrase '' --quick-gen-key "imagegate bench $k <$k@imagegate.test>" "$k" sign never \
    2>>"$W/gpg.log" || { cat "$W/gpg.log" >&2; die "gpg could not make the $k key"; }
  FPR[$k]=$(gpg --with-colons --list-keys "$k@imagegate.test" | awk -F: '/^fpr/ { print $10; exit }')
  gpg --armor --export "${FPR[$k]}" > "$W/$k.pub.asc"
done
log "keys: $(for k in "${KEYS[@]}"; do printf '%s %s  ' "$k" "${FPR[$k]}"; done)"


# One simple-signing signature per key type, made by skopeo (gpgme, the
# same code path as `skopeo copy --sign-by`), over one manifest.
make_oci_layout "$W/oci-standalone" "imagegate bench: standalone" bench
MANIFEST="$W/oci-standalone/manifest.json"
REF=registry.example/bench/app:v1
for k in "${KEYS[@]}"; do
  skopeo standalone-sign -o "$W/$k.sig" "$MANIFEST" "$REF" "${FPR[$k]}"
  # All three verifiers must accept it before anything is timed.
  skopeo standalone-verify "$MANIFEST" "$REF" "${FPR[$k]}" "$W/$k.sig" >/dev/null \
    || die "skopeo standalone-verify rejects the $k signature"
  "$IMAGEGATE" standalone-verify "$MANIFEST" "$REF" "$W/$k.pub.asc" "$W/$k.sig" >/dev/null \
    || die "imagegate standalone-verify rejects the $k signature"
  gpg --batch --quiet --verify "$W/$k.sig" 2>/dev/null || die "gpg --verify rejects the $k signature"
done

# --- registry, lookaside, 20 signed images -----------------------------------------
mkdir -p "$W"/{registry-data,sigstore,registries.d,pull}
REG_PORT=$(free_port)
REG="127.0.0.1:$REG_PORT"
cat > "$W/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: "$W/registry-data"}}
http: {addr: "$REG", secret: imagegate-bench}
EOF
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
PIDS+=($!)
wait_http "http://$REG/v2/"
LOOKASIDE_PORT=$(free_port)
LOOKASIDE="http://127.0.0.1:$LOOKASIDE_PORT"
python3 -m http.server "$LOOKASIDE_PORT" --bind 127.0.0.1 --directory "$W/sigstore" \
  > "$W/lookaside.log" 2>&1 &
PIDS+=($!)
wait_http "$LOOKASIDE/"
cat > "$W/registries.d/bench.yaml" <<EOF
docker:
  $REG:
    lookaside: $LOOKASIDE
    lookaside-staging: file://$W/sigstore
EOF
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$W/accept-anything.json"
cat > "$W/policy.json" <<EOF
{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "$REG/bench": [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "$W/ed25519.pub.asc"}
      ]
    }
  }
}
EOF
SIGN_KEY=ed25519
IMAGE_REFS=()
for i in $(seq "$IMAGES"); do
  make_oci_layout "$W/oci-$i" "imagegate bench image $i" bench
  skopeo copy -q --dest-tls-verify=false --registries.d "$W/registries.d" \
    --policy "$W/accept-anything.json" --sign-by "${FPR[$SIGN_KEY]}" \
    "oci:$W/oci-$i:bench" "docker://$REG/bench/app$i:v1"
  IMAGE_REFS+=("$REG/bench/app$i:v1")
done
log "pushed and signed $IMAGES images to $REG/bench (key $SIGN_KEY), lookaside $LOOKASIDE"

# skopeo needs one process per image. The destination directories are made
# once: c/image's dir: transport replaces an earlier copy in place, so the
# timed loop spawns nothing but skopeo.
cat > "$W/skopeo-copy-all.sh" <<EOF
#!/usr/bin/env bash
set -eu
n=0
for ref in "\$@"; do
  n=\$((n + 1))
  skopeo copy -q --src-tls-verify=false --registries.d "$W/registries.d" \\
    --policy "$W/policy.json" "docker://\$ref" "dir:$W/pull/\$n"
done
echo "skopeo accepted \$n images"
EOF
chmod +x "$W/skopeo-copy-all.sh"
for i in $(seq "$IMAGES"); do mkdir -p "$W/pull/$i"; done
IMAGEGATE_VERIFY=("$IMAGEGATE" verify --policy "$W/policy.json" --registries-d "$W/registries.d"
  --tls-verify=false)
for ref in "${IMAGE_REFS[@]}"; do IMAGEGATE_VERIFY+=("docker://$ref"); done

# Both tools must accept every image, else the comparison is void.
"${IMAGEGATE_VERIFY[@]}" --output json > "$W/imagegate-verdicts.json" \
  || die "imagegate verify did not accept all $IMAGES images (see $W/imagegate-verdicts.json)"
imagegate_accepted=$(python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
print(sum(1 for i in v if i["documents"] and all(d["allowed"] for d in i["documents"])))' \
  "$W/imagegate-verdicts.json")
[ "$imagegate_accepted" -eq "$IMAGES" ] || die "imagegate accepted $imagegate_accepted of $IMAGES images"
skopeo_out=$("$W/skopeo-copy-all.sh" "${IMAGE_REFS[@]}") || die "skopeo copy rejected an image"
skopeo_accepted=$(sed -n 's/^skopeo accepted \([0-9]*\) images$/\1/p' <<<"$skopeo_out")
[ "$skopeo_accepted" -eq "$IMAGES" ] || die "skopeo accepted $skopeo_accepted of $IMAGES images"
log "both accept all $IMAGES images (imagegate $imagegate_accepted, skopeo $skopeo_accepted)"

# --- measurements -------------------------------------------------------------------
# hyperfine fails on a non-zero exit, so every timed run is also a check
# that the verdict stayed "accepted".
hf() { # hf NAME RUNS [hyperfine arguments...]
  local name=$1 runs=$2; shift 2
  hyperfine --style basic -N --warmup 3 --runs "$runs" --export-json "$W/hf-$name.json" "$@"
}

quiet "criterion verify"
"$W/bin/verify-bench" --bench --noplot "${verify_crit[@]}"

for k in "${KEYS[@]}"; do
  quiet "standalone $k"
  hf "standalone-$k" "$standalone_runs" \
    -n "imagegate standalone-verify ($k)" \
    "$IMAGEGATE standalone-verify $MANIFEST $REF $W/$k.pub.asc $W/$k.sig" \
    -n "skopeo standalone-verify ($k)" \
    "skopeo standalone-verify $MANIFEST $REF ${FPR[$k]} $W/$k.sig" \
    -n "gpg --verify ($k)" \
    "gpg --batch --quiet --verify $W/$k.sig"
done

quiet "criterion scope"
"$W/bin/scope-bench" --bench --noplot "${scope_crit[@]}"

quiet "verify $IMAGES images"
hf verify-images "$copy_runs" \
  -n "imagegate verify ($IMAGES images, 1 process)" "${IMAGEGATE_VERIFY[*]}" \
  -n "skopeo copy --policy ($IMAGES images, $IMAGES processes)" \
  "$W/skopeo-copy-all.sh ${IMAGE_REFS[*]}"

# --- summary ------------------------------------------------------------------------
summary=$(python3 - "$W" "$IMAGES" "$command_line" "$imagegate_accepted" "$skopeo_accepted" \
  "criterion ${verify_crit[*]} / ${scope_crit[*]}; hyperfine --runs $standalone_runs / $copy_runs" "${KEYS[@]}" <<'PY'
import json, os, sys
w, images, command, ig_ok, sk_ok, settings, keys = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:]

def crit(*path):
    """criterion's estimate in ns: the slope for linear sampling, else the mean."""
    e = json.load(open(os.path.join(w, "criterion", *path, "new", "estimates.json")))
    est = e.get("slope") or e["mean"]
    return est["point_estimate"], est["confidence_interval"]["lower_bound"], est["confidence_interval"]["upper_bound"]

def hf(name):
    """hyperfine results by command name: (mean s, stddev s)."""
    r = json.load(open(os.path.join(w, f"hf-{name}.json")))["results"]
    return {x["command"]: (x["mean"], x["stddev"] or 0.0) for x in r}

loads = {}
for line in open(os.path.join(w, "loads.tsv")):
    name, busy, normal, load = line.rstrip("\n").split("\t")
    loads[name] = f"CPUs {busy}% busy ({normal}% at nice 0), load average {load}"

ms = lambda s: f"{s * 1e3:.2f} ms"
out = []
out.append(f"command: `{command}` ({settings})")
out.append("")
out.append(f"load just before each measurement (CPU use over 2 s; `uptime` 1/5/15-min load average):")
for name, l in loads.items():
    out.append(f"- {name}: {l}")
out.append("")
out.append("### 1. In-process verification (criterion) vs one process per signature (hyperfine)")
out.append("")
out.append("| key | in-process per signature | verifications/s | `gpg --verify` per signature (process) | ratio gpg / in-process | `skopeo standalone-verify` per signature (process) | ratio skopeo / in-process |")
out.append("|---|---|---|---|---|---|---|")
side = []
for k in keys:
    ns, lo, hi = crit("verify", k)
    s = hf(f"standalone-{k}")
    ig, sk, gp = s[f"imagegate standalone-verify ({k})"], s[f"skopeo standalone-verify ({k})"], s[f"gpg --verify ({k})"]
    sec = ns / 1e9
    out.append(f"| {k} | {ns / 1e3:.1f} µs [{lo / 1e3:.1f}, {hi / 1e3:.1f}] | {1 / sec:,.0f} | {ms(gp[0])} ± {ms(gp[1])} | {gp[0] / sec:,.0f}× | {ms(sk[0])} ± {ms(sk[1])} | {sk[0] / sec:,.0f}× |")
    side.append((k, ig, sk, sec))
out.append("")
out.append("### 3. The same signature: `imagegate standalone-verify` vs `skopeo standalone-verify` (one hyperfine run per key)")
out.append("")
out.append("| key | imagegate (process) | skopeo (process) | process-level ratio | in-process ratio (skopeo / in-process) | target ≥ 20× |")
out.append("|---|---|---|---|---|---|")
for k, ig, sk, sec in side:
    r = sk[0] / sec
    out.append(f"| {k} | {ms(ig[0])} ± {ms(ig[1])} | {ms(sk[0])} ± {ms(sk[1])} | {sk[0] / ig[0]:.1f}× | {r:,.0f}× | {'met' if r >= 20 else 'NOT met'} |")
out.append("")
out.append("### 2. Scope lookup (criterion), 10,000 scopes against 10")
out.append("")
out.append("| case | 10 scopes | 10,000 scopes | ratio (10,000 / 10) |")
out.append("|---|---|---|---|")
for case in ["exact", "wildcard", "default"]:
    a, b = crit("scope_lookup", case, "10")[0], crit("scope_lookup", case, "10000")[0]
    out.append(f"| {case} | {a:.0f} ns | {b:.0f} ns | {b / a:.2f} |")
out.append("")
out.append(f"### 4. {images} signed images: `imagegate verify` (1 process) vs `skopeo copy --policy` (1 process per image)")
out.append("")
v = hf("verify-images")
ig = next(val for cmd, val in v.items() if cmd.startswith("imagegate"))
sk = next(val for cmd, val in v.items() if cmd.startswith("skopeo"))
out.append("| imagegate verify, all images | skopeo copy, all images | per image (imagegate / skopeo) | ratio | target ≥ 5× | accepted |")
out.append("|---|---|---|---|---|---|")
r = sk[0] / ig[0]
out.append(f"| {ms(ig[0])} ± {ms(ig[1])} | {ms(sk[0])} ± {ms(sk[1])} | {ms(ig[0] / images)} / {ms(sk[0] / images)} | {r:.1f}× | {'met' if r >= 5 else 'NOT met'} | imagegate {ig_ok}/{images}, skopeo {sk_ok}/{images} |")
print("\n".join(out))
PY
)
printf '\n%s\n' "$summary"
[ -z "$out" ] || printf '%s\n' "$summary" > "$out"
