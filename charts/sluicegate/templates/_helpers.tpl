{{/*
Shared names and labels. Object names follow the cluster conventions (fixed, not release-prefixed):
one Sluicegate per cluster.
*/}}

{{- define "sluicegate.labels" -}}
app.kubernetes.io/name: sluicegate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sluicegate
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "sluicegate.operatorSelectorLabels" -}}
app.kubernetes.io/name: sluicegate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "sluicegate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* DNS names a certificate for the Service named in .name (in the release namespace) must carry. */}}
{{- define "sluicegate.serviceDNSNames" -}}
{{- $ns := .root.Release.Namespace -}}
- {{ .name }}
- {{ .name }}.{{ $ns }}
- {{ .name }}.{{ $ns }}.svc
- {{ .name }}.{{ $ns }}.svc.cluster.local
{{- end -}}

{{/* True (non-empty) when the operator reconciles every namespace. */}}
{{- define "sluicegate.clusterWide" -}}
{{- if not .Values.operator.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/*
Namespaces a namespaced operator watches, as a JSON list: the watched ones plus its own (the operator
adds its own namespace to what it watches, so kopf peers and reads there too).
*/}}
{{- define "sluicegate.servedNamespaces" -}}
{{- append .Values.operator.watchNamespaces .Release.Namespace | uniq | toJson -}}
{{- end -}}

{{/* The Secret holding the budget authority's database URL: the user's, or the quickstart database's. */}}
{{- define "sluicegate.authorityDatabaseSecret" -}}
{{- if .Values.authority.postgresql.enabled -}}
sluicegate-authority-db
{{- else if .Values.authority.database.secretRef.name -}}
{{ .Values.authority.database.secretRef.name }}
{{- else -}}
{{ fail "authority.enabled needs authority.database.secretRef.name (a Secret with the PostgreSQL URL) or authority.postgresql.enabled" }}
{{- end -}}
{{- end -}}
