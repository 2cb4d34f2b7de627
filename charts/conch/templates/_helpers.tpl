{{/* Names, labels, images and the security settings every pod shares. */}}

{{- define "conch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "conch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "conch.operator.fullname" -}}
{{- printf "%s-operator" (include "conch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "conch.gateway.fullname" -}}
{{- printf "%s-gateway" (include "conch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "conch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "conch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conch
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "conch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conch.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "conch.componentLabels" -}}
{{ include "conch.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "conch.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "conch.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "conch.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "conch.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* <registry>/<repository>:<tag>[@<digest>]: (dict "root" $ "image" .Values.gateway.image). */}}
{{- define "conch.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- $digest := ternary (printf "@%s" .image.digest) "" (not (empty .image.digest)) -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s%s" (trimSuffix "/" .root.Values.image.registry) .image.repository $tag $digest -}}
{{- else -}}
{{- printf "%s:%s%s" .image.repository $tag $digest -}}
{{- end -}}
{{- end }}

{{/* Pod-level security: non-root 10001, RuntimeDefault seccomp. */}}
{{- define "conch.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* Container-level security: read-only root, no privilege escalation, no capabilities. */}}
{{- define "conch.containerSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  privileged: false
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* Is the operator watching every namespace? */}}
{{- define "conch.operator.clusterwide" -}}
{{- if not .Values.operator.watchNamespaces }}true{{ end }}
{{- end }}
