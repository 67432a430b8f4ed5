"""The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards,
the controls of the "latest" version), checked on a rendered pod template: which level a
workload needs in its namespace (`pod-security.kubernetes.io/enforce=LEVEL`).

This is our reading of the published controls, not the admission plugin itself (that is Go:
k8s.io/pod-security-admission). It applies the one API-server default that changes the
verdict: with hostNetwork, a container port's hostPort defaults to its containerPort.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Manifest = Mapping[str, Any]

LEVELS = ("restricted", "baseline", "privileged")

# Baseline: "Adding additional capabilities beyond those listed below must be disallowed."
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
    }
)  # fmt: skip
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})  # fmt: skip
# Restricted: the only volume types allowed.
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
     "projected", "secret"}
)  # fmt: skip


def _containers(spec: Manifest) -> Iterator[Manifest]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or ()


def _baseline(spec: Manifest, annotations: Mapping[str, str]) -> Iterator[str]:
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"host namespaces: {field}"
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        yield "HostProcess: pod"
    for volume in spec.get("volumes") or ():
        if "hostPath" in volume:
            yield f"hostPath volume {volume['name']!r}"
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        yield "seccomp: pod Unconfined"
    if (pod_sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        yield "AppArmor: pod Unconfined"
    for sysctl in pod_sc.get("sysctls") or ():
        if sysctl["name"] not in SAFE_SYSCTLS:
            yield f"sysctl {sysctl['name']}"
    yield from _selinux("pod", pod_sc.get("seLinuxOptions") or {})
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            yield f"AppArmor annotation {key}={value}"
    for c in _containers(spec):
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            yield f"privileged: {name}"
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            yield f"HostProcess: {name}"
        extra = set((sc.get("capabilities") or {}).get("add") or ()) - BASELINE_CAPABILITIES
        if extra:
            yield f"capabilities beyond baseline in {name}: {sorted(extra)}"
        for port in c.get("ports") or ():
            host_port = port.get("hostPort") or (
                port["containerPort"] if spec.get("hostNetwork") else 0
            )
            if host_port:
                yield f"host port {host_port} in {name}"
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            yield f"seccomp: {name} Unconfined"
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            yield f"AppArmor: {name} Unconfined"
        if sc.get("procMount", "Default") != "Default":
            yield f"/proc mount type in {name}"
        yield from _selinux(name, sc.get("seLinuxOptions") or {})


def _selinux(where: str, options: Manifest) -> Iterator[str]:
    if options.get("type", "") not in SELINUX_TYPES:
        yield f"SELinux type in {where}"
    if options.get("user") or options.get("role"):
        yield f"SELinux user/role in {where}"


def _restricted(spec: Manifest) -> Iterator[str]:
    pod_sc = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or ():
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield f"volume type of {volume['name']!r}: {sorted(kinds)}"
    if pod_sc.get("runAsUser") == 0:
        yield "runAsUser 0: pod"
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for c in _containers(spec):
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"allowPrivilegeEscalation not false: {name}"
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            yield f"runAsNonRoot not true: {name}"
        if sc.get("runAsUser") == 0:
            yield f"runAsUser 0: {name}"
        if sc.get("seccompProfile", {}).get("type", pod_seccomp) not in ("RuntimeDefault",
                                                                         "Localhost"):  # fmt: skip
            yield f"seccomp profile not RuntimeDefault or Localhost: {name}"
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or ()):
            yield f"capabilities not dropping ALL: {name}"
        extra = set(caps.get("add") or ()) - {"NET_BIND_SERVICE"}
        if extra:
            yield f"capabilities beyond NET_BIND_SERVICE in {name}: {sorted(extra)}"


def violations(pod_owner: Manifest, level: str) -> list[str]:
    """What keeps a workload's pod template from `level`; empty when it may run there."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    template = pod_owner["spec"]["template"]
    spec = template["spec"]
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    found: list[str] = []
    if level in ("baseline", "restricted"):
        found.extend(_baseline(spec, annotations))
    if level == "restricted":
        found.extend(_restricted(spec))
    return found


def required_level(pod_owner: Manifest) -> str:
    """The most restrictive level a workload's pods are admitted at."""
    return next(level for level in LEVELS if not violations(pod_owner, level))
