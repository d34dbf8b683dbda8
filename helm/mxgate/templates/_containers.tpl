{{/* The mxgate container: used by the Deployment and by the sidecar patch. */}}
{{- define "mxgate.sidecarContainer" -}}
- name: mxgate
  image: {{ include "mxgate.image" (list .Values.mxgate.image .) | quote }}
  imagePullPolicy: {{ .Values.mxgate.image.pullPolicy }}
  args: [serve, --config, /etc/mxgate/config/mxgate.yml]
  ports:
    - name: http
      containerPort: {{ .Values.mxgate.port }}
      protocol: TCP
    {{- if .Values.metrics.enabled }}
    - name: admin
      containerPort: {{ .Values.metrics.port }}
      protocol: TCP
    {{- end }}
  env:
    - name: MXGATE_HEALTHCHECK_URL
      value: {{ printf "http://127.0.0.1:%v/healthz" .Values.mxgate.port | quote }}
    {{- if include "mxgate.redisPasswordFromSecret" . }}
    # `password: ${MXGATE_REDIS_PASSWORD}` in mxgate.yml's store section.
    - name: MXGATE_REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ .Values.store.redis.existingSecret }}
          key: {{ .Values.store.redis.existingSecretPasswordKey }}
    {{- end }}
    {{- with .Values.mxgate.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if or (and .Values.mxgate.existingSecret .Values.mxgate.existingSecretAsEnv) .Values.mxgate.envFrom }}
  envFrom:
    {{- if and .Values.mxgate.existingSecret .Values.mxgate.existingSecretAsEnv }}
    - secretRef:
        name: {{ .Values.mxgate.existingSecret }}
    {{- end }}
    {{- with .Values.mxgate.envFrom }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  volumeMounts:
    - name: mxgate-config
      mountPath: /etc/mxgate/config
      readOnly: true
    {{- if .Values.mxgate.existingSecret }}
    - name: mxgate-secrets
      mountPath: /etc/mxgate/secrets
      readOnly: true
    {{- end }}
    - name: mxgate-data
      mountPath: /data
    {{- with .Values.mxgate.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.mxgate.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.mxgate.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.mxgate.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml .Values.mxgate.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.mxgate.securityContext | nindent 4 }}
{{- end }}

{{/* What the core needs to read mxgate's assertions (env of the core container). */}}
{{- define "mxgate.coreAssertionEnv" -}}
- name: MXGATE_ASSERTION_ISSUER
  value: {{ .Values.mxgate.config.public_url | trimSuffix "/" | quote }}
- name: MXGATE_JWKS_URL
  value: {{ printf "http://127.0.0.1:%v/.well-known/jwks.json" .Values.mxgate.port | quote }}
{{- end }}

{{/* The mxgate container's volumes. */}}
{{- define "mxgate.sidecarVolumes" -}}
- name: mxgate-config
  configMap:
    name: {{ include "mxgate.fullname" . }}
    items:
      - key: mxgate.yml
        path: mxgate.yml
      - key: mxcp-config.yml
        path: mxcp-config.yml
{{- if .Values.mxgate.existingSecret }}
- name: mxgate-secrets
  secret:
    secretName: {{ .Values.mxgate.existingSecret }}
    defaultMode: 0440
{{- end }}
- name: mxgate-data
{{- if include "mxgate.dataOnClaim" . }}
  persistentVolumeClaim:
    claimName: {{ include "mxgate.dataClaimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
