{{/* Names, labels and the image, shared by every template. */}}

{{- define "kubgp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubgp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: kubgp.component (dict "root" $ "component" "node"). */}}
{{- define "kubgp.component" -}}
{{- printf "%s-%s" (include "kubgp.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "kubgp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubgp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubgp
{{- end -}}

{{/* Selector labels of a component: kubgp.selectorLabels (dict "root" $ "component" "node"). */}}
{{- define "kubgp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubgp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kubgp.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- /* A number (--set image.tag=2 gives an int64, a values file a float64) prints as digits. */ -}}
{{- $tag := .Values.image.tag | default "" -}}
{{- if not (kindIs "string" $tag) -}}
{{- $tag = $tag | int64 | toString -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion $tag) -}}
{{- end -}}
{{- end -}}

{{/* The speaker's control socket path. */}}
{{- define "kubgp.socket" -}}
{{- printf "%s/speaker.sock" (trimSuffix "/" .Values.node.socketDir) -}}
{{- end -}}

{{/*
The Secrets the node agent may GET (BGPPeers' passwordSecretRefs), as JSON: namespace ->
{"any": true} (rbac.peerSecretNamespaces: every name) or {"names": [...]} (rbac.peerSecrets).
*/}}
{{- define "kubgp.peerSecretAccess" -}}
{{- $access := dict -}}
{{- range .Values.rbac.peerSecrets -}}
{{- $namespace := .namespace | default $.Release.Namespace -}}
{{- $names := list -}}
{{- if hasKey $access $namespace -}}
{{- $names = (get $access $namespace).names -}}
{{- end -}}
{{- $_ := set $access $namespace (dict "names" (append $names .name | uniq | sortAlpha)) -}}
{{- end -}}
{{- range .Values.rbac.peerSecretNamespaces -}}
{{- $_ := set $access . (dict "any" true) -}}
{{- end -}}
{{- toJson $access -}}
{{- end -}}

{{/* The speaker's uid: 0 when it keeps a capability (Kubernetes gives added capabilities to
uid 0 only), else node.nonRootUser like the agent. */}}
{{/* The speaker's capabilities: speaker.capabilities, and NET_ADMIN with routeImport. */}}
{{- define "kubgp.speakerCapabilities" -}}
{{- $caps := .Values.speaker.capabilities -}}
{{- if .Values.routeImport.enabled -}}
{{- $caps = append $caps "NET_ADMIN" | uniq -}}
{{- end -}}
{{- toJson $caps -}}
{{- end -}}

{{- define "kubgp.speakerUser" -}}
{{- if include "kubgp.speakerCapabilities" . | fromJsonArray -}}0{{- else -}}{{ int .Values.node.nonRootUser }}{{- end -}}
{{- end -}}

{{/* The host part of the node processes' --metrics-address (metrics.bindAddress): the kubelet
expands $(HOST_IP) from the container's env (status.hostIP); IPv6 goes in brackets. */}}
{{- define "kubgp.nodeMetricsHost" -}}
{{- $address := .Values.metrics.bindAddress -}}
{{- if eq $address "hostIP" -}}
[$(HOST_IP)]
{{- else if contains ":" $address -}}
[{{ $address }}]
{{- else -}}
{{ $address }}
{{- end -}}
{{- end -}}

{{/* HOST_IP for $(HOST_IP) in a node container's args, when metrics.bindAddress needs it. */}}
{{- define "kubgp.hostIPEnv" -}}
{{- if and .Values.metrics.enabled (eq .Values.metrics.bindAddress "hostIP") -}}
- name: HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
{{- end -}}
{{- end -}}

{{/* The container securityContext of a kubgp process: nothing but the capabilities given
("add"), as "user" and "group" when given (uid 0 only with capabilities). */}}
{{- define "kubgp.containerSecurityContext" -}}
{{- if hasKey . "user" -}}
runAsUser: {{ .user }}
runAsGroup: {{ .group }}
runAsNonRoot: {{ ne (int .user) 0 }}
{{ end -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  {{- with .add }}
  add: {{ toJson . }}
  {{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The command lines: one place to adjust when the programs' flags change. */}}
{{- define "kubgp.speakerArgs" -}}
- kubgp-speaker
- run
- --socket={{ include "kubgp.socket" . }}
- --state-dir={{ .Values.node.stateDir }}
- --shutdown={{ .Values.speaker.shutdown }}
- --log-level={{ .Values.logLevel }}
{{- /* The control socket: 0660, group node.nonRootUser, and the agent's uid allowed besides the
speaker's own (its probes run as that). */}}
- --socket-group={{ int .Values.node.nonRootUser }}
{{- range list (include "kubgp.speakerUser" . | int) (int .Values.node.nonRootUser) | uniq }}
- --allowed-uid={{ . }}
{{- end }}
{{- if .Values.metrics.enabled }}
- --metrics-address={{ include "kubgp.nodeMetricsHost" . }}:{{ .Values.metrics.speakerPort }}
{{- end }}
{{- with .Values.speaker.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kubgp.nodeAgentArgs" -}}
- kubgp-controller
- node
- --node-name=$(NODE_NAME)
- --speaker-socket={{ include "kubgp.socket" . }}
- --default-asn={{ .Values.defaultASN }}
- --log-level={{ .Values.logLevel }}
- --health-address=127.0.0.1:{{ .Values.nodeAgent.healthPort }}
{{- if .Values.inClusterRouting.enabled }}
- --all-nodes
{{- end }}
{{- if .Values.metrics.enabled }}
- --metrics-address={{ include "kubgp.nodeMetricsHost" . }}:{{ .Values.metrics.nodeAgentPort }}
{{- end }}
{{- with .Values.routeImport }}
{{- if .alwaysCompareMed }}
- --always-compare-med
{{- end }}
{{- if .enabled }}
- --fib
- --fib-table={{ int64 .table }}
- --fib-protocol={{ int .protocol }}
- --fib-metric={{ int64 .metric }}
- --fib-max-paths={{ int .maxPaths }}
{{- end }}
{{- end }}
{{- with .Values.nodeAgent.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kubgp.controllerArgs" -}}
- kubgp-controller
- cluster
- --namespace=$(POD_NAMESPACE)
- --log-level={{ .Values.logLevel }}
- --health-address=:{{ .Values.controller.healthPort }}
{{- if .Values.metrics.enabled }}
- --metrics-address=:{{ .Values.metrics.controllerPort }}
{{- end }}
{{- with .Values.controller.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The speaker answers on its control socket. */}}
{{- define "kubgp.speakerProbe" -}}
exec:
  command:
    - kubgp-speaker
    - status
    - --socket={{ include "kubgp.socket" .root }}
    - --timeout={{ sub .probe.timeoutSeconds 1 }}
    - --output=json
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}

{{/* The node agent's /readyz and /livez on the node's loopback (host network). */}}
{{- define "kubgp.nodeAgentProbe" -}}
httpGet:
  host: 127.0.0.1
  path: {{ .path }}
  port: {{ .root.Values.nodeAgent.healthPort }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}
