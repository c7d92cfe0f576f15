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

{{/*
Object names. `names: familiar` (the default) gives the names of the familiar runbook: Deployments `<release>-api`
and `<pool name>`, Service `<release>-api-server`, PodMonitor `<release>-monitor`, ManagedCertificate
`<release>-ssl-cert`. `names: chart-0.1` keeps the names chart 0.1 rendered (`<fullname>-api`,
`<fullname>-worker-<pool>`, PodMonitor `<fullname>`, one ManagedCertificate per route) for installs that must not
rename their workloads on upgrade. Both API Service names exist in either mode (one is an alias of the other).
The release name is cut to 50 characters so that "<release>-api-server" stays a 63-character DNS label.
*/}}
{{- define "chorus.releaseShort" -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- define "chorus.legacyNames" -}}{{ if eq .Values.names "chart-0.1" }}true{{ end }}{{- end -}}

{{- define "chorus.api.name" -}}
{{- if include "chorus.legacyNames" . -}}
{{ include "chorus.fullname" . }}-api
{{- else -}}
{{ include "chorus.releaseShort" . }}-api
{{- end -}}
{{- end -}}
{{/* The API Service the Ingress uses (and, chart-0.1 names aside, the runbook's `<release>-api-server`). */}}
{{- define "chorus.api.serviceName" -}}
{{- if include "chorus.legacyNames" . -}}
{{ include "chorus.fullname" . }}-api
{{- else -}}
{{ include "chorus.releaseShort" . }}-api-server
{{- end -}}
{{- end -}}
{{/* The other API Service name, an alias selecting the same pods: chart 0.1's `<fullname>-api`, or with chart-0.1
names the runbook's `<release>-api-server`. */}}
{{- define "chorus.api.aliasServiceName" -}}
{{- if include "chorus.legacyNames" . -}}
{{ include "chorus.releaseShort" . }}-api-server
{{- else -}}
{{ include "chorus.fullname" . }}-api
{{- end -}}
{{- end -}}
{{- define "chorus.nats.name" -}}{{ include "chorus.fullname" . }}-nats{{- end -}}
{{- define "chorus.licenseProxy.name" -}}{{ include "chorus.fullname" . }}-license-proxy{{- end -}}
{{- define "chorus.podMonitor.name" -}}
{{- if include "chorus.legacyNames" . -}}
{{ include "chorus.fullname" . }}
{{- else -}}
{{ include "chorus.releaseShort" . }}-monitor
{{- end -}}
{{- end -}}

{{/* Worker Deployment (and ScaledObject) name; called with (dict "root" $ "worker" $w). */}}
{{- define "chorus.worker.name" -}}
{{- if include "chorus.legacyNames" .root -}}
{{- printf "%s-worker-%s" (include "chorus.fullname" .root) .worker.name -}}
{{- else -}}
{{- .worker.name -}}
{{- end -}}
{{- end -}}

{{/*
The pods' ServiceAccount, normalised to YAML (use with fromYaml): create, name, annotations. `infra.serviceAccount`
is empty (the chart creates `<fullname>`), a name (the familiar form: the chart creates that ServiceAccount), or a
map {create, name, annotations}.
*/}}
{{- define "chorus.serviceAccount" -}}
{{- $sa := .Values.infra.serviceAccount -}}
{{- if kindIs "map" $sa -}}
create: {{ ternary $sa.create true (hasKey $sa "create") }}
name: {{ default (include "chorus.fullname" .) $sa.name | quote }}
annotations: {{ default dict $sa.annotations | toJson }}
{{- else -}}
create: true
name: {{ default (include "chorus.fullname" .) $sa | quote }}
annotations: {}
{{- end -}}
{{- end -}}

{{- define "chorus.serviceAccountName" -}}
{{- (include "chorus.serviceAccount" . | fromYaml).name -}}
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

{{/* ManagedCertificate name for one route with chart-0.1 names; called with (dict "root" $ "host" "tts.example.com"). */}}
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

{{/* Comma-separated ManagedCertificate names: `<release>-ssl-cert` (every route), or one per route with chart-0.1 names. */}}
{{- define "chorus.gke.certificateNames" -}}
{{- if include "chorus.legacyNames" . -}}
{{- $names := list -}}
{{- range .Values.ingress.routes -}}
{{- $names = append $names (include "chorus.managedCertificate.name" (dict "root" $ "host" .)) -}}
{{- end -}}
{{- join "," $names -}}
{{- else -}}
{{ include "chorus.releaseShort" . }}-ssl-cert
{{- end -}}
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


{{/*
GCS credentials from the familiar `infra.gcsSecretName` (a service-account JSON key): used when the artifact store is
a gs:// bucket and `artifacts.credentialsSecret` is empty. The Secret is mounted read-only and named by
GOOGLE_APPLICATION_CREDENTIALS. "true" or empty.
*/}}
{{- define "chorus.gcs.enabled" -}}
{{- if and .Values.infra.gcsSecretName (hasPrefix "gs://" (toString .Values.artifacts.location)) (not .Values.artifacts.credentialsSecret) -}}
true
{{- end -}}
{{- end -}}
{{- define "chorus.gcs.env" -}}
{{- if include "chorus.gcs.enabled" . }}
# The bucket's service-account key, from the Secret infra.gcsSecretName.
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: {{ printf "/var/run/secrets/chorus-gcs/%s" .Values.infra.gcsSecretKey | quote }}
{{- end }}
{{- end -}}
{{- define "chorus.gcs.volumeMount" -}}
{{- if include "chorus.gcs.enabled" . }}
- name: gcs-credentials
  mountPath: /var/run/secrets/chorus-gcs
  readOnly: true
{{- end }}
{{- end -}}
{{- define "chorus.gcs.volume" -}}
{{- if include "chorus.gcs.enabled" . }}
- name: gcs-credentials
  secret:
    secretName: {{ .Values.infra.gcsSecretName }}
    items:
      - key: {{ .Values.infra.gcsSecretKey }}
        path: {{ .Values.infra.gcsSecretKey }}
{{- end }}
{{- end -}}

{{/*
Where the API's client keys come from: "tenant" (api.tenantKeysOnly: tenant keys from the license proxy only),
"explicit" (api.apiKeysSecret.name), "open" (api.allowOpen), "familiar" (the Secret api.keySecret.name, by default
`api-key-secret` with CARTESIA_API_KEY and CONTAINER_KEY), or "none" (nothing set: refused by validate.yaml).
*/}}
{{- define "chorus.api.keyMode" -}}
{{- $api := .Values.api -}}
{{- if $api.tenantKeysOnly -}}tenant
{{- else if $api.apiKeysSecret.name -}}explicit
{{- else if $api.allowOpen -}}open
{{- else if $api.keySecret.name -}}familiar
{{- else -}}none
{{- end -}}
{{- end -}}

{{/*
A worker pool's GPU, normalised to YAML (use with fromYaml); called with (dict "root" $ "worker" $w):
resource (the extended resource requested, one per pod; empty: a CPU pool), accelerator (the GPU model to pin the
pods to; empty: any), image (the image name). `gpuType` is the resource (`nvidia.com/gpu`, or a MIG resource such as
`nvidia.com/mig-1g.10gb`); a value without a "/" is chart 0.1's meaning, an accelerator label such as `nvidia-l4`
(resource nvidia.com/gpu; on GKE also the node pool's accelerator). The image `chorus` of a GPU pool is its CUDA
variant, `chorus-cuda`.
*/}}
{{- define "chorus.worker.gpu" -}}
{{- $wa := .worker.workerArgs -}}
{{- $type := toString (default "" $wa.gpuType) -}}
{{- $resource := "" -}}
{{- $accelerator := toString (default "" $wa.accelerator) -}}
{{- if contains "/" $type -}}
{{- $resource = $type -}}
{{- else if $type -}}
{{- $resource = "nvidia.com/gpu" -}}
{{- if and (not $accelerator) (eq .root.Values.infra.provider "gcp") -}}
{{- $accelerator = $type -}}
{{- end -}}
{{- end -}}
{{- $image := default "chorus" $wa.image -}}
{{- if and $resource (eq $image "chorus") -}}
{{- $image = "chorus-cuda" -}}
{{- end -}}
resource: {{ $resource | quote }}
accelerator: {{ $accelerator | quote }}
legacy: {{ and $type (not (contains "/" $type)) }}
image: {{ $image | quote }}
{{- end -}}
