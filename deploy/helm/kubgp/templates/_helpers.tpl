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
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The speaker's control socket path. */}}
{{- define "kubgp.socket" -}}
{{- printf "%s/speaker.sock" (trimSuffix "/" .Values.node.socketDir) -}}
{{- end -}}

{{/* Namespaces whose Secrets the node agent may read (passwordSecretRef). */}}
{{- define "kubgp.peerSecretNamespaces" -}}
{{- $namespaces := .Values.rbac.peerSecretNamespaces | default (list .Release.Namespace) -}}
{{- toJson (uniq $namespaces) -}}
{{- end -}}

{{/* The container securityContext of a kubgp process: nothing but the capabilities given. */}}
{{- define "kubgp.containerSecurityContext" -}}
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
{{- if .Values.metrics.enabled }}
- --metrics-address=:{{ .Values.metrics.speakerPort }}
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
{{- if .Values.metrics.enabled }}
- --metrics-address=:{{ .Values.metrics.nodeAgentPort }}
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
