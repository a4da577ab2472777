{{/* Chart name, overridable with nameOverride. */}}
{{- define "keywarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: <release>-<chart>, or <release> when it contains the chart name. */}}
{{- define "keywarden.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "keywarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "keywarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; call with (dict "root" $ "component" "controller"). */}}
{{- define "keywarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keywarden.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image reference; the tag defaults to the chart's appVersion. */}}
{{- define "keywarden.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of the controller's ServiceAccount. */}}
{{- define "keywarden.controllerServiceAccount" -}}
{{- default (printf "%s-controller" (include "keywarden.fullname" .)) .Values.controller.serviceAccount.name }}
{{- end }}

{{/* Name of the verifier's ServiceAccount. */}}
{{- define "keywarden.verifierServiceAccount" -}}
{{- default (printf "%s-verifier" (include "keywarden.fullname" .)) .Values.verifier.serviceAccount.name }}
{{- end }}

{{/* Soft anti-affinity spreading one component's replicas across nodes. */}}
{{- define "keywarden.spreadAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "keywarden.selectorLabels" . | nindent 12 }}
{{- end }}

{{/* Environment shared by both components. */}}
{{- define "keywarden.commonEnv" -}}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}
