{{/*
Names. The full name is kept short (30) so that "<fullname>-worker-<pool>" (pool names are at most 24 characters)
stays a valid 63-character DNS label for Services and pod host names.
*/}}
{{- define "chorus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 30 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 30 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "chorus.api.name" -}}{{ include "chorus.fullname" . }}-api{{- end -}}
{{- define "chorus.nats.name" -}}{{ include "chorus.fullname" . }}-nats{{- end -}}
{{- define "chorus.licenseProxy.name" -}}{{ include "chorus.fullname" . }}-license-proxy{{- end -}}

{{/* Worker Deployment name; called with (dict "root" $ "worker" $w). */}}
{{- define "chorus.worker.name" -}}
{{- printf "%s-worker-%s" (include "chorus.fullname" .root) .worker.name -}}
{{- end -}}

{{- define "chorus.serviceAccountName" -}}
{{- default (include "chorus.fullname" .) .Values.infra.serviceAccount.name -}}
{{- end -}}

{{- define "chorus.natsUrl" -}}
{{- printf "nats://%s:4222" (include "chorus.nats.name" .) -}}
{{- end -}}


{{/* Labels shared by every object. */}}
{{- define "chorus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: chorus
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.release.releaseTag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chorus
{{- with .Values.clusterName }}
chorus/cluster: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; called with (dict "root" $ "component" "api"). */}}
{{- define "chorus.selectorLabels" -}}
app.kubernetes.io/name: chorus
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Annotations on every workload object (not on pod templates: changing them must not roll pods). */}}
{{- define "chorus.workloadAnnotations" -}}
chorus/version: {{ default .Chart.AppVersion .Values.release.version | quote }}
chorus/release-tag: {{ .Values.release.releaseTag | quote }}
{{- end -}}

{{/* A Chorus image, pinned by the one release tag; called with (dict "root" $ "image" "chorus"). */}}
{{- define "chorus.image" -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.infra.imageRegistry) .image .root.Values.release.releaseTag -}}
{{- end -}}

{{- define "chorus.natsImage" -}}
{{- printf "%s:%s" .Values.nats.image.repository .Values.nats.image.tag -}}
{{- end -}}

{{/* Pod-level security context: non-root, fixed ids matching the image's user, RuntimeDefault seccomp. */}}
{{- define "chorus.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context. */}}
{{- define "chorus.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* imagePullSecrets, ServiceAccount and the pod security context shared by every pod. */}}
{{- define "chorus.podCommon" -}}
serviceAccountName: {{ include "chorus.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.infra.imagePullSecret }}
imagePullSecrets:
  - name: {{ . }}
{{- end }}
securityContext:
  {{- include "chorus.podSecurityContext" . | nindent 2 }}
{{- end -}}

{{/* GKE BackendConfig names. */}}
{{- define "chorus.backendConfig.api" -}}{{ include "chorus.api.name" . }}{{- end -}}
{{- define "chorus.backendConfig.licenseProxy" -}}{{ include "chorus.licenseProxy.name" . }}{{- end -}}

{{/* ManagedCertificate name for one route; called with (dict "root" $ "host" "tts.example.com"). */}}
{{- define "chorus.managedCertificate.name" -}}
{{- printf "%s-%s" (include "chorus.fullname" .root) (.host | replace "." "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The PodMonitor's relabelings: the labels the autoscaling queries and dashboards select on. */}}
{{- define "chorus.podMonitorRelabelings" -}}
- sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]
  targetLabel: chorus_release
- sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_component]
  targetLabel: chorus_component
- sourceLabels: [__meta_kubernetes_pod_label_chorus_worker]
  targetLabel: chorus_worker
{{- end -}}

{{/* Label selector of one worker pool in PromQL (labels set by the PodMonitor's relabelings). */}}
{{- define "chorus.promWorkerSelector" -}}
{{- printf "namespace=%q,chorus_release=%q,chorus_worker=%q" .root.Release.Namespace .root.Release.Name .worker.name -}}
{{- end -}}

{{/* Label selector of one model's API queue metrics in PromQL. */}}
{{- define "chorus.promModelSelector" -}}
{{- printf "namespace=%q,chorus_release=%q,model=%q" .root.Release.Namespace .root.Release.Name .worker.workerArgs.model -}}
{{- end -}}

{{/* Worker autoscaling settings with defaults filled in; returns YAML, use with fromYaml. */}}
{{- define "chorus.worker.autoscaling" -}}
{{- $a := default dict .autoscaling -}}
enabled: {{ ternary $a.enabled false (hasKey $a "enabled") }}
threshold: {{ ternary $a.threshold 0.8 (hasKey $a "threshold") }}
minReplicas: {{ ternary $a.minReplicas 1 (hasKey $a "minReplicas") }}
maxReplicas: {{ ternary $a.maxReplicas 4 (hasKey $a "maxReplicas") }}
{{- end -}}

{{/* Comma-separated ManagedCertificate names, one per route. */}}
{{- define "chorus.gke.certificateNames" -}}
{{- $names := list -}}
{{- range .Values.ingress.routes -}}
{{- $names = append $names (include "chorus.managedCertificate.name" (dict "root" $ "host" .)) -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/* The artifact store's environment (API and workers); empty without artifacts.location. Indent with nindent. */}}
{{- define "chorus.artifacts.env" -}}
{{- with .Values.artifacts }}
{{- if .location }}
# The artifact store: voices and dictionaries (API), voice models under models/ (workers).
- name: CHORUS_ARTIFACTS
  value: {{ .location | quote }}
- name: CHORUS_RELOAD_INTERVAL
  value: {{ .reloadIntervalSeconds | toString | quote }}
- name: CHORUS_ENABLE_HOT_RELOAD
  value: {{ .hotReload | toString | quote }}
{{- range $name, $value := .extraEnv }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The artifact store's credentials as envFrom (API and workers); empty unless a location and a Secret are set. */}}
{{- define "chorus.artifacts.envFrom" -}}
{{- if and .Values.artifacts.location .Values.artifacts.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.artifacts.credentialsSecret }}
{{- end }}
{{- end -}}
