{{/*
Names. Kubernetes names are at most 63 characters; Helm release names at most 53.
*/}}
{{- define "imagegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "imagegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "imagegate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "imagegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "imagegate.labels" -}}
helm.sh/chart: {{ include "imagegate.chart" . }}
{{ include "imagegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imagegate
{{- end -}}

{{- define "imagegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "imagegate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Both webhook configurations share this name (they are different kinds). */}}
{{- define "imagegate.webhookName" -}}
{{- include "imagegate.fullname" . -}}
{{- end -}}

{{/* The Secret with the serving certificate: self-managed or written by cert-manager. */}}
{{- define "imagegate.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "imagegate.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{- define "imagegate.leaseName" -}}
{{- printf "%s-leader" (include "imagegate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "imagegate.certificateName" -}}
{{- printf "%s-serving" (include "imagegate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "imagegate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The admission budget: the webhook timeout minus one second, unless set. */}}
{{- define "imagegate.admissionTimeout" -}}
{{- if .Values.admission.timeout -}}
{{- .Values.admission.timeout -}}
{{- else -}}
{{- printf "%ds" (sub (int .Values.webhook.timeoutSeconds) 1) -}}
{{- end -}}
{{- end -}}

{{/*
The namespaces no webhook ever sees: the control plane's, imagegate's own
(so imagegate can always start, even when no replica is serving), and any
namespace labelled imagegate.dev/ignore=true.
*/}}
{{- define "imagegate.namespaceSelector" -}}
{{- $excluded := list "kube-system" "kube-node-lease" "kube-public" .Release.Namespace -}}
{{- range .Values.webhook.excludedNamespaces -}}
{{- $excluded = append $excluded . -}}
{{- end -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range ($excluded | uniq) }}
      - {{ . | quote }}
      {{- end }}
  - key: imagegate.dev/ignore
    operator: NotIn
    values:
      - "true"
{{- with .Values.webhook.namespaceSelectorExpressions }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Admission rules for a list of kinds. Pods include the ephemeralcontainers
subresource (`kubectl debug` adds containers through it).
*/}}
{{- define "imagegate.rules" -}}
{{- $core := list -}}
{{- $apps := list -}}
{{- $batch := list -}}
{{- range .kinds -}}
{{- if eq . "Pod" -}}
{{- $core = concat $core (list "pods" "pods/ephemeralcontainers") -}}
{{- else if eq . "ReplicationController" -}}
{{- $core = append $core "replicationcontrollers" -}}
{{- else if has . (list "Deployment" "ReplicaSet" "StatefulSet" "DaemonSet") -}}
{{- $apps = append $apps (printf "%ss" (lower .)) -}}
{{- else if has . (list "Job" "CronJob") -}}
{{- $batch = append $batch (printf "%ss" (lower .)) -}}
{{- else -}}
{{- fail (printf "unknown kind %q: expected Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob or ReplicationController" .) -}}
{{- end -}}
{{- end -}}
{{- range $group := list (dict "name" "" "resources" $core) (dict "name" "apps" "resources" $apps) (dict "name" "batch" "resources" $batch) }}
{{- if $group.resources }}
- apiGroups: [{{ $group.name | quote }}]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources:
    {{- range (uniq $group.resources) }}
    - {{ . }}
    {{- end }}
  scope: Namespaced
{{- end }}
{{- end }}
{{- end -}}
