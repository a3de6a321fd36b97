{{- define "swell.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "swell.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "swell.labels" -}}
{{ include "swell.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "swell.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (include "swell.fullname" .) .Values.serviceAccount.name }}
{{- else }}{{ required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}{{ end }}
{{- end }}

{{- define "swell.externalScaler.fullname" -}}
{{ printf "%s-external-scaler" (include "swell.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "swell.externalScaler.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: external-scaler
{{- end }}

{{- define "swell.externalScaler.labels" -}}
{{ include "swell.externalScaler.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "swell.externalScaler.serviceAccountName" -}}
{{- $sa := .Values.externalScaler.serviceAccount }}
{{- if $sa.create }}{{ default (include "swell.externalScaler.fullname" .) $sa.name }}
{{- else }}{{ required "externalScaler.serviceAccount.name is required when externalScaler.serviceAccount.create is false" $sa.name }}{{ end }}
{{- end }}

{{/* The labels every Swell component shares, for the Prometheus monitors. */}}
{{- define "swell.instanceLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
