{{/*
Names, labels and the pieces every Fluxgate pod shares: image, security context, environment
(ConfigMaps for settings, Secret references for secrets), scheduling and the preStop drain.
*/}}

{{- define "fluxgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: `<release>` when it already holds the chart name (`fluxgate`). */}}
{{- define "fluxgate.fullname" -}}
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

{{- define "fluxgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "fluxgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fluxgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Every label of one component's objects. */}}
{{- define "fluxgate.labels" -}}
helm.sh/chart: {{ include "fluxgate.chart" .root }}
{{ include "fluxgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: fluxgate
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "fluxgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fluxgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fluxgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{/* A service's in-cluster DNS name: (dict "root" $ "component" "gateway"). */}}
{{- define "fluxgate.serviceHost" -}}
{{- printf "%s-%s.%s.svc.%s" (include "fluxgate.fullname" .root) .component .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* The headless Service of the inference servers, which the balancer resolves to pod IPs. */}}
{{- define "fluxgate.inferenceHeadless" -}}
{{- printf "%s-inference-headless" (include "fluxgate.fullname" .) -}}
{{- end -}}

{{/* --- secrets ------------------------------------------------------------------------- */}}

{{/* The Secret this chart writes (generated and inline secrets). */}}
{{- define "fluxgate.secretName" -}}
{{- printf "%s-secrets" (include "fluxgate.fullname" .) -}}
{{- end -}}

{{/*
The base64 value of one key of the chart's Secret: the given value, else what the live Secret
already holds (so an upgrade keeps it), else a new random one. (dict "root" $ "key" "x"
"value" "" "generate" "alnum32")
*/}}
{{- define "fluxgate.secretData" -}}
{{- if .value -}}
{{- .value | toString | b64enc -}}
{{- else -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace (include "fluxgate.secretName" .root) -}}
{{- if and $live $live.data (hasKey $live.data .key) -}}
{{- index $live.data .key -}}
{{- else if eq .generate "whsec" -}}
{{- printf "whsec_%s" (randAlphaNum 32 | b64enc) | b64enc -}}
{{- else if eq .generate "flower" -}}
{{- printf "%s:%s" .root.Values.flower.auth.username (randAlphaNum 24) | b64enc -}}
{{- else -}}
{{- randAlphaNum 40 | b64enc -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Where the app secrets live: an existing Secret or the chart's. */}}
{{- define "fluxgate.appSecretName" -}}
{{- default (include "fluxgate.secretName" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "fluxgate.flowerSecretName" -}}
{{- default (include "fluxgate.secretName" .) .Values.flower.auth.existingSecret -}}
{{- end -}}

{{- define "fluxgate.redisSecretName" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecret -}}
{{- else -}}
{{- include "fluxgate.secretName" . -}}
{{- end -}}
{{- end -}}

{{- define "fluxgate.redisSecretKey" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecretPasswordKey -}}
{{- else -}}
redis-password
{{- end -}}
{{- end -}}

{{- define "fluxgate.s3SecretName" -}}
{{- default (include "fluxgate.secretName" .) .Values.outputs.s3.credentials.existingSecret -}}
{{- end -}}

{{/* Whether S3 credentials come from a Secret (else: the pod's identity, e.g. IRSA). */}}
{{- define "fluxgate.s3HasCredentials" -}}
{{- $c := .Values.outputs.s3.credentials -}}
{{- if or $c.existingSecret $c.accessKeyId -}}true{{- end -}}
{{- end -}}

{{/* --- Redis ----------------------------------------------------------------------------- */}}

{{/* Redis as scheme, host:port and database, from redis.url or redis.host/port/db. */}}
{{- define "fluxgate.redisParts" -}}
{{- $r := .Values.redis -}}
{{- if $r.url -}}
{{- $u := urlParse $r.url -}}
{{- $db := trimPrefix "/" $u.path | default "0" -}}
{{- dict "scheme" $u.scheme "address" $u.host "db" $db | toJson -}}
{{- else -}}
{{- $host := default "redis" $r.host -}}
{{- /* A bare Service name is qualified: KEDA resolves it from its own namespace. */ -}}
{{- if not (contains "." $host) -}}
{{- $host = printf "%s.%s.svc.%s" $host .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{- dict "scheme" (ternary "rediss" "redis" $r.tls) "address" (printf "%s:%v" $host $r.port) "db" (toString $r.db) | toJson -}}
{{- end -}}
{{- end -}}

{{/*
FLUXGATE_REDIS_URL, with the password spliced in by Kubernetes from FLUXGATE_REDIS_PASSWORD
(defined just before it): the URL in the pod spec holds `$(FLUXGATE_REDIS_PASSWORD)`, never the
password.
*/}}
{{- define "fluxgate.redisEnv" -}}
{{- $p := include "fluxgate.redisParts" . | fromJson -}}
{{- if .Values.redis.auth.enabled }}
- name: FLUXGATE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "fluxgate.redisSecretName" . }}
      key: {{ include "fluxgate.redisSecretKey" . }}
- name: FLUXGATE_REDIS_URL
  value: {{ printf "%s://:$(FLUXGATE_REDIS_PASSWORD)@%s/%s" $p.scheme $p.address $p.db | quote }}
{{- else }}
- name: FLUXGATE_REDIS_URL
  value: {{ printf "%s://%s/%s" $p.scheme $p.address $p.db | quote }}
{{- end }}
{{- end -}}

{{/* --- pod pieces -------------------------------------------------------------------------- */}}

{{/*
Environment of a Python component: (dict "root" $ "component" "gateway" "redis" true "s3" true
"admin" false "llm" false "extra" list). Settings come from the ConfigMaps (envFrom); only
secrets are referenced here.
*/}}
{{- define "fluxgate.pythonEnv" -}}
{{- $root := .root -}}
envFrom:
  - configMapRef:
      name: {{ include "fluxgate.fullname" $root }}-config
  - configMapRef:
      name: {{ include "fluxgate.fullname" $root }}-{{ .configOf | default .component }}-config
env:
  # Writable paths under the /tmp emptyDir (the root file system is read-only).
  - name: HOME
    value: /tmp
  - name: XDG_CACHE_HOME
    value: /tmp/.cache
  - name: FLUXGATE_INTERNAL_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "fluxgate.appSecretName" $root }}
        key: internal-secret
  - name: FLUXGATE_WEBHOOK_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "fluxgate.appSecretName" $root }}
        key: webhook-secret
  {{- if .admin }}
  - name: FLUXGATE_ADMIN_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ include "fluxgate.appSecretName" $root }}
        key: admin-token
  {{- end }}
  {{- if and .llm (or $root.Values.secrets.llmApiKey $root.Values.secrets.existingSecret) }}
  - name: FLUXGATE_LLM_API_KEY
    valueFrom:
      secretKeyRef:
        name: {{ include "fluxgate.appSecretName" $root }}
        key: llm-api-key
        optional: true
  {{- end }}
  {{- with .values }}
  {{- if .terminationGracePeriodSeconds }}
  # In-flight requests (long-poll waits, inference streams) may finish after SIGTERM within
  # what the grace period leaves after the preStop sleep.
  - name: FLUXGATE_SHUTDOWN_GRACE_S
    value: {{ max 1 (sub (int .terminationGracePeriodSeconds) (add (int (.preStopSleepSeconds | default 0)) 5)) | quote }}
  {{- end }}
  {{- end }}
  {{- if .redis }}
  {{- include "fluxgate.redisEnv" $root | nindent 2 }}
  {{- end }}
  {{- if and .s3 $root.Values.outputs.s3.enabled (include "fluxgate.s3HasCredentials" $root) }}
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef:
        name: {{ include "fluxgate.s3SecretName" $root }}
        key: {{ $root.Values.outputs.s3.credentials.accessKeyIdKey }}
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ include "fluxgate.s3SecretName" $root }}
        key: {{ $root.Values.outputs.s3.credentials.secretAccessKeyKey }}
  {{- end }}
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
Pod annotations that roll a component's pods when its settings or the secrets change:
(dict "root" $ "component" "gateway").
*/}}
{{- define "fluxgate.checksums" -}}
{{- $config := printf "%s\n%s" (include "fluxgate.config.shared" .root) (include (printf "fluxgate.config.%s" .component) .root) -}}
checksum/config: {{ $config | sha256sum }}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- end -}}

{{/* Pod-level settings shared by every component: (dict "root" $ "values" .Values.gateway). */}}
{{- define "fluxgate.podCommon" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "fluxgate.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The preStop hook: keep serving while the endpoint is removed everywhere, then stop. */}}
{{- define "fluxgate.preStop" -}}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ . }}"]
{{- end -}}

{{/* An HTTP probe on the named port: (dict "path" "/healthz" "probe" .Values.x.probes.liveness). */}}
{{- define "fluxgate.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: http
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- with .probe.initialDelaySeconds }}
initialDelaySeconds: {{ . }}
{{- end }}
{{- end -}}

{{/* Rolling updates never take a serving pod away before its replacement is ready. */}}
{{- define "fluxgate.strategy" -}}
strategy:
  type: RollingUpdate
  rollingUpdate:
    maxUnavailable: {{ .maxUnavailable }}
    maxSurge: {{ .maxSurge }}
{{- end -}}

{{/* Writable scratch space (the root file system is read-only). */}}
{{- define "fluxgate.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ . | default "1Gi" }}
{{- end -}}

{{/* The shared output directory of the local store (gateway + workers). */}}
{{- define "fluxgate.outputsVolume" -}}
{{- $v := .Values.outputs.volume -}}
{{- if and (not .Values.outputs.s3.enabled) $v.enabled }}
- name: outputs
  {{- if eq $v.type "hostPath" }}
  hostPath:
    path: {{ $v.hostPath }}
    type: DirectoryOrCreate
  {{- else }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-outputs" (include "fluxgate.fullname" .)) $v.existingClaim }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "fluxgate.outputsMount" -}}
{{- if and (not .Values.outputs.s3.enabled) .Values.outputs.volume.enabled }}
- name: outputs
  mountPath: {{ .Values.outputs.volume.mountPath }}
{{- end }}
{{- end -}}

{{/* The LoRA adapter store, read-only, in the pods that read it (gateway, inference). */}}
{{- define "fluxgate.loraMount" -}}
{{- with .Values.models.loraVolume }}
{{- if .existingClaim }}
- name: loras
  mountPath: {{ .mountPath }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "fluxgate.loraVolume" -}}
{{- with .Values.models.loraVolume }}
{{- if .existingClaim }}
- name: loras
  persistentVolumeClaim:
    claimName: {{ .existingClaim }}
    readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Refuse a ConfigMap entry whose name says it is a secret: those belong in a Secret. */}}
{{- define "fluxgate.assertNotSecret" -}}
{{- if regexMatch "(?i)(SECRET|PASSWORD|TOKEN|API_KEY|ACCESS_KEY|CREDENTIAL|BASIC_AUTH)" . -}}
{{- fail (printf "%s looks like a secret: set it through the chart's secrets values (a Secret), not a ConfigMap" .) -}}
{{- end -}}
{{- end -}}

{{/* KEDA's formula adding every priority lane of the given queues: "gpu_0 + gpu_1 + ...". */}}
{{- define "fluxgate.kedaLaneNames" -}}
{{- $names := list -}}
{{- range $queue := . -}}
{{- range $lane := until 10 -}}
{{- $names = append $names (printf "%s_%d" (regexReplaceAll "[^A-Za-z0-9_]" $queue "_") $lane) -}}
{{- end -}}
{{- if ne $queue "webhooks" -}}
{{- $names = append $names (printf "%s_staged" (regexReplaceAll "[^A-Za-z0-9_]" $queue "_")) -}}
{{- end -}}
{{- end -}}
{{- join " + " $names -}}
{{- end -}}
