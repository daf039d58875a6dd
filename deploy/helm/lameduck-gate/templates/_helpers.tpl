{{- define "lameduck-gate.labels" -}}
app.kubernetes.io/name: lameduck-gate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "lameduck-gate.selector" -}}
app.kubernetes.io/name: lameduck-gate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
