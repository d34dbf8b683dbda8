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

{{/* "true" when /data is the PersistentVolumeClaim: persistence on with the redb store. With
Redis the state is in Redis and /data is an emptyDir, whatever `persistence` says. */}}
{{- define "mxgate.dataOnClaim" -}}
{{- if and .Values.persistence.enabled (eq .Values.store.type "redb") }}true{{ end }}
{{- end }}

{{/* "true" when mxgate reads the Redis password from store.redis.existingSecret (env var
MXGATE_REDIS_PASSWORD). */}}
{{- define "mxgate.redisPasswordFromSecret" -}}
{{- if and (eq .Values.store.type "redis") .Values.store.redis.existingSecret }}true{{ end }}
{{- end }}

{{/* mxgate.yml's `store` section, from `store`. */}}
{{- define "mxgate.storeConfig" -}}
{{- $store := dict "type" .Values.store.type "purge_interval" .Values.store.purge_interval -}}
{{- if eq .Values.store.type "redis" }}
{{- $redis := .Values.store.redis -}}
{{- with $redis.url }}{{ $_ := set $store "url" . }}{{ end -}}
{{- with $redis.cluster }}{{ $_ := set $store "cluster" . }}{{ end -}}
{{- with $redis.sentinel }}{{ $_ := set $store "sentinel" . }}{{ end -}}
{{- $_ := set $store "key_prefix" $redis.keyPrefix -}}
{{- $_ := set $store "outage_grace" $redis.outageGrace -}}
{{- if include "mxgate.redisPasswordFromSecret" . }}{{ $_ := set $store "password" "${MXGATE_REDIS_PASSWORD}" }}{{ end -}}
{{- else if .Values.store.path }}
{{- $_ := set $store "path" .Values.store.path -}}
{{- end }}
{{- toYaml $store }}
{{- end }}

{{/* mxgate.yml: the chart's settings, then the user's `mxgate.config` on top. */}}
{{- define "mxgate.gatewayConfig" -}}
{{- $store := include "mxgate.storeConfig" . | fromYaml -}}
{{- $chart := dict
      "listen" (printf "0.0.0.0:%v" .Values.mxgate.port)
      "upstream" (printf "http://127.0.0.1:%v" .Values.core.port)
      "data_dir" "/data"
      "mxcp_config" "/etc/mxgate/config/mxcp-config.yml"
      "store" $store -}}
{{- if .Values.metrics.enabled }}
{{- $_ := set $chart "admin_listen" (printf "0.0.0.0:%v" .Values.metrics.port) }}
{{- end }}
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
{{- if not (has .Values.store.type (list "redb" "redis")) }}
{{- fail (printf "store.type %q is not a store: redb (one replica) or redis (shared by several replicas)" .Values.store.type) }}
{{- end }}
{{- if and .Values.workload.create (gt (int .Values.workload.replicaCount) 1) (ne .Values.store.type "redis") }}
{{- fail (printf "workload.replicaCount %v needs store.type: redis: the redb store serves one replica (each would keep its own logins and keys); set store.type: redis and store.redis.url, cluster or sentinel" .Values.workload.replicaCount) }}
{{- end }}
{{- if eq .Values.store.type "redis" }}
{{- include "mxgate.validateRedis" . }}
{{- end }}
{{- if .Values.serviceMonitor }}
{{- fail "serviceMonitor moved to metrics.serviceMonitor (and needs metrics.enabled: mxgate serves /metrics on its admin port)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled: mxgate serves /metrics only on its admin port" }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.mxgate.port)) }}
{{- fail (printf "metrics.port %v is mxgate.port: the admin listener needs its own port (never the public one)" .Values.metrics.port) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}

{{/* store.type: redis: where Redis is, no password in a ConfigMap, nothing on a claim, and the
MXCP config's auth_encryption_key (which mxgate requires with Redis). */}}
{{- define "mxgate.validateRedis" -}}
{{- $redis := .Values.store.redis -}}
{{- $given := list -}}
{{- if $redis.url }}{{ $given = append $given "url" }}{{ end -}}
{{- if $redis.cluster }}{{ $given = append $given "cluster" }}{{ end -}}
{{- if $redis.sentinel }}{{ $given = append $given "sentinel" }}{{ end -}}
{{- if ne (len $given) 1 }}
{{- fail (printf "store.type: redis needs exactly one of store.redis.url (one server), store.redis.cluster (node URLs) and store.redis.sentinel ({urls, service}); given: %s" (join ", " $given | default "none")) }}
{{- end }}
{{- if and $redis.sentinel (not (and $redis.sentinel.urls $redis.sentinel.service)) }}
{{- fail "store.redis.sentinel needs urls (the Sentinels, redis://host:26379) and service (the primary's name)" }}
{{- end }}
{{- $urls := concat (list $redis.url) ($redis.cluster | default list) (($redis.sentinel | default dict).urls | default list) | compact -}}
{{- range $urls }}
{{- if not (regexMatch "^(redis|rediss|valkey|valkeys)://[^/]" .) }}
{{- fail (printf "store.redis: %q is not a Redis URL (redis://host:6379/0, rediss:// for TLS)" .) }}
{{- end }}
{{- if contains ":" (urlParse .).userinfo }}
{{- fail "store.redis: put no password in a Redis URL (it would land in a ConfigMap): use store.redis.existingSecret" }}
{{- end }}
{{- end }}
{{- if and $redis.existingSecret (not $redis.existingSecretPasswordKey) }}
{{- fail "store.redis.existingSecret needs store.redis.existingSecretPasswordKey: the Secret's key holding the password" }}
{{- end }}
{{- if .Values.persistence.existingClaim }}
{{- fail "persistence.existingClaim is not used with store.type: redis: the state is in Redis and /data is an emptyDir; remove it" }}
{{- end }}
{{- $key := include "mxgate.authEncryptionKeyPath" . -}}
{{- if hasPrefix "!" $key }}
{{- fail (printf "store.type: redis needs the MXCP config's %s (in mxgate.mxcpConfig): every replica must open the sessions the others sealed; e.g. auth_encryption_key: file:///etc/mxgate/secrets/auth-encryption-key with that key in mxgate.existingSecret (openssl rand -base64 32)" (trimPrefix "!" $key)) }}
{{- end }}
{{- end }}

{{/* The path of auth.persistence.auth_encryption_key in the MXCP config for the project and
profile mxgate picks (mxgate.config's, else the only one; profile `default` among several),
prefixed with "!" when it is not set there. */}}
{{- define "mxgate.authEncryptionKeyPath" -}}
{{- $config := .Values.mxgate.mxcpConfig -}}
{{- if kindIs "string" $config }}
{{- $config = fromYaml $config -}}
{{- if hasKey $config "Error" }}
{{- fail (printf "mxgate.mxcpConfig is not YAML: %s" (get $config "Error")) }}
{{- end }}
{{- end }}
{{- $projects := include "mxgate.lookup" (list $config "projects") | fromYaml -}}
{{- $project := .Values.mxgate.config.project | default "" -}}
{{- if and (not $project) (eq (len $projects) 1) }}{{ $project = keys $projects | first }}{{ end -}}
{{- $profiles := include "mxgate.lookup" (list $projects $project "profiles") | fromYaml -}}
{{- $profile := .Values.mxgate.config.profile | default "" -}}
{{- if not $profile }}{{ $profile = ternary (keys $profiles | first) "default" (eq (len $profiles) 1) }}{{ end -}}
{{- $path := printf "projects.%s.profiles.%s.auth.persistence.auth_encryption_key" ($project | default "<project>") $profile -}}
{{- $key := include "mxgate.lookup" (list $profiles $profile "auth" "persistence" "auth_encryption_key") | fromYaml -}}
{{- if $key.value }}
{{- $path }}
{{- else }}
{{- printf "!%s" $path }}
{{- end }}
{{- end }}

{{/* (list map key...): the map found at that path as YAML, or {value: <scalar>} for a value;
nothing where the path ends (a key missing, a null or a scalar on the way). Unlike `dig`, a null
in the user's config is no error. */}}
{{- define "mxgate.lookup" -}}
{{- $node := first . -}}
{{- $found := true -}}
{{- range rest . }}
{{- if and $found (kindIs "map" $node) (hasKey $node .) }}{{ $node = get $node . }}{{ else }}{{ $found = false }}{{ end -}}
{{- end }}
{{- if and $found (kindIs "map" $node) }}
{{- toYaml $node }}
{{- else if and $found (not (kindIs "invalid" $node)) }}
{{- toYaml (dict "value" $node) }}
{{- end }}
{{- end }}
