{{/* Names and labels. */}}
{{- define "mxgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mxgate.fullname" -}}
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

{{- define "mxgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mxgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mxgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mxgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The pods the Service, PDB and NetworkPolicy select: the chart's, or the wrapped Deployment's. */}}
{{- define "mxgate.podSelector" -}}
{{- if and (not .Values.workload.create) .Values.workload.existingPodLabels -}}
{{- toYaml .Values.workload.existingPodLabels }}
{{- else -}}
{{- include "mxgate.selectorLabels" . }}
{{- end }}
{{- end }}

{{- define "mxgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mxgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository@digest or repository:tag (default appVersion). */}}
{{- define "mxgate.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{ $image.repository }}:{{ $image.tag | default $root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "mxgate.dataClaimName" -}}
{{- default (printf "%s-data" (include "mxgate.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* mxgate.yml: the chart's settings, then the user's `mxgate.config` on top. */}}
{{- define "mxgate.gatewayConfig" -}}
{{- $store := dict "type" .Values.store.type "purge_interval" .Values.store.purge_interval -}}
{{- if .Values.store.path }}{{- $_ := set $store "path" .Values.store.path }}{{- end -}}
{{- $chart := dict
      "listen" (printf "0.0.0.0:%v" .Values.mxgate.port)
      "upstream" (printf "http://127.0.0.1:%v" .Values.core.port)
      "data_dir" "/data"
      "mxcp_config" "/etc/mxgate/config/mxcp-config.yml"
      "store" $store -}}
{{- if not .Values.mxgate.config.public_url }}
{{- fail "mxgate.config.public_url is required: the URL clients use (e.g. https://mcp.example.com)" }}
{{- end }}
{{- toYaml (mergeOverwrite $chart (deepCopy .Values.mxgate.config)) }}
{{- end }}

{{/* The core's MXCP user config: auth off, streamable HTTP on 127.0.0.1. */}}
{{- define "mxgate.coreConfig" -}}
{{- if .Values.core.config }}
{{- toYaml .Values.core.config }}
{{- else }}
{{- $profile := dict "auth" (dict "provider" "none") -}}
{{- $project := dict "profiles" (dict (.Values.mxgate.config.profile | default "default") $profile) -}}
{{- $config := dict
      "mxcp" 1
      "transport" (dict "provider" "streamable-http" "http" (dict "host" "127.0.0.1" "port" .Values.core.port))
      "projects" (dict (required "mxgate.config.project names the MXCP project" .Values.mxgate.config.project) $project) -}}
{{- toYaml $config }}
{{- end }}
{{- end }}

{{/* Checks that fail the rendering with a clear message. */}}
{{- define "mxgate.validate" -}}
{{- if and (not .Values.workload.create) (not .Values.workload.existingPodLabels) }}
{{- fail "workload.create: false needs workload.existingPodLabels: the labels of the core pods to wrap" }}
{{- end }}
{{- if and .Values.persistence.enabled (eq .Values.store.type "redb") (gt (int .Values.workload.replicaCount) 1) }}
{{- fail "the redb store on a PersistentVolumeClaim serves one replica: set workload.replicaCount to 1 (a shared store comes with later releases)" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}
