{{- define "gateway.name" -}}{{ .Release.Name }}-images-gateway{{- end -}}
{{- define "gateway.labels" -}}
app.kubernetes.io/name: images-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "gateway.secret" -}}{{ .Values.existingSecret | default (include "gateway.name" .) }}{{- end -}}
