{{- define "lingo.fullname" -}}
{{- printf "%s" (default .Release.Name .Values.fullnameOverride) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lingo.labels" -}}
app.kubernetes.io/name: lingo-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "lingo.selector" -}}
app.kubernetes.io/name: lingo-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lingo.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* Sessions, their Secrets and workers live apart from the release: the facade's rights there
     cannot reach the LiveKit secret, the claim-signing key or the leader Lease. */}}
{{- define "lingo.sessionsNamespace" -}}
{{ default (printf "%s-sessions" .Release.Namespace) .Values.facade.sessionsNamespace }}
{{- end -}}

{{/* The namespaces the operator watches: operator.watchNamespaces, with the sessions namespace
     added when they are named; empty (all namespaces) stays empty. JSON, for fromJsonArray. */}}
{{- define "lingo.watchNamespaces" -}}
{{- $list := .Values.operator.watchNamespaces | default list -}}
{{- $sessions := include "lingo.sessionsNamespace" . -}}
{{- if and $list (not (has $sessions $list)) -}}
{{- $list = append $list $sessions -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}

{{/* What the operator and the workers dial: the chart's own LiveKit Service, or livekit.url. */}}
{{- define "lingo.livekitUrl" -}}
{{- if .Values.livekit.deploy -}}
ws://{{ include "lingo.fullname" . }}-livekit.{{ .Release.Namespace }}.svc.cluster.local:7880
{{- else -}}
{{ .Values.livekit.url }}
{{- end -}}
{{- end -}}

{{/* The Redis LiveKit servers share: one given, the chart's own (replicas > 1), or none. */}}
{{- define "lingo.livekitRedis" -}}
{{- if .Values.livekit.redis.address -}}
{{ .Values.livekit.redis.address }}
{{- else if gt (int .Values.livekit.replicas) 1 -}}
{{ include "lingo.fullname" . }}-livekit-redis.{{ .Release.Namespace }}.svc.cluster.local:6379
{{- end -}}
{{- end -}}

{{- define "lingo.livekitEnv" -}}
- name: LIVEKIT_URL
  value: {{ include "lingo.livekitUrl" . | quote }}
- name: LIVEKIT_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.livekit.existingSecret }}, key: {{ .Values.livekit.apiKeyKey }}}
- name: LIVEKIT_API_SECRET
  valueFrom:
    secretKeyRef: {name: {{ .Values.livekit.existingSecret }}, key: {{ .Values.livekit.apiSecretKey }}}
{{- end -}}

{{/* Replicas of a component spread over nodes where possible, unless affinity is given. */}}
{{- define "lingo.affinity" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}{{- $given := index . 2 -}}
{{- if $given }}
affinity: {{- toYaml $given | nindent 2 }}
{{- else }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels: {{- include "lingo.selector" $root | nindent 14 }}
              app.kubernetes.io/component: {{ $component }}
{{- end }}
{{- end -}}

{{/* Only what the operator does in a namespace it serves: reconcile sessions and worker pools (and
their status), create/delete the tokens and claim Secrets and worker Pods, claim pooled Pods
(patch), watch worker Pods, post Events. */}}
{{- define "lingo.operatorRules" -}}
- apiGroups: [translation.lingo.dev]
  resources: [streamingsessions]
  verbs: [get, list, watch, patch, update, delete]
- apiGroups: [translation.lingo.dev]
  resources: [streamingsessions/status]
  verbs: [get, patch, update]
- apiGroups: [translation.lingo.dev]
  resources: [workerpools]
  verbs: [get, list, watch, patch, update]
- apiGroups: [translation.lingo.dev]
  resources: [workerpools/status]
  verbs: [get, patch, update]
- apiGroups: [""]
  resources: [secrets]
  verbs: [create, get, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [create, get, list, watch, patch, delete]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
