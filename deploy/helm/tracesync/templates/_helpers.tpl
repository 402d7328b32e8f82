{{- define "tracesync.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tracesync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tracesync.labels" -}}
app.kubernetes.io/name: {{ include "tracesync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tracesync.selector" -}}
app.kubernetes.io/name: {{ include "tracesync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tracesync.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret holding the key: the user's, or the chart's from apiKey.value. */}}
{{- define "tracesync.secretName" -}}
{{- if .Values.apiKey.existingSecret -}}
{{- .Values.apiKey.existingSecret -}}
{{- else if .Values.apiKey.value -}}
{{- printf "%s-api-key" (include "tracesync.fullname" .) -}}
{{- else -}}
{{- fail "no API key: set apiKey.existingSecret to the name of a Secret holding the Stratix API key (its key apiKey.secretKey, default api-key), or apiKey.value to the key itself" -}}
{{- end -}}
{{- end -}}

{{- define "tracesync.secretKey" -}}
{{- if .Values.apiKey.existingSecret -}}{{ .Values.apiKey.secretKey }}{{- else -}}api-key{{- end -}}
{{- end -}}

{{/* Pod-level security: non-root 65532, the key file readable by its group. */}}
{{- define "tracesync.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tracesync.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The environment every tracesync container shares: never the key itself. */}}
{{- define "tracesync.env" -}}
- name: TRACESYNC_API_KEY_FILE
  value: /run/secrets/tracesync/api-key
- name: TRACESYNC_LOG_FORMAT
  value: json
{{- with .Values.api.baseURL }}
- name: LAYERLENS_STRATIX_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.api.organizationID }}
- name: TRACESYNC_ORGANIZATION_ID
  value: {{ . | quote }}
{{- end }}
{{- with .Values.api.projectID }}
- name: TRACESYNC_PROJECT_ID
  value: {{ . | quote }}
{{- end }}
{{- with .Values.api.project }}
- name: TRACESYNC_PROJECT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "tracesync.keyVolume" -}}
- name: api-key
  secret:
    secretName: {{ include "tracesync.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "tracesync.secretKey" . }}
        path: api-key
{{- end -}}

{{- define "tracesync.keyMount" -}}
- name: api-key
  mountPath: /run/secrets/tracesync
  readOnly: true
{{- end -}}
