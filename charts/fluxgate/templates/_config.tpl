{{/*
The non-secret FLUXGATE_* settings of each component, as ConfigMap data. Secrets never appear
here: they are Secret references in the pods (see fluxgate.pythonEnv).
*/}}

{{/* Extra settings from a values map, each name checked against secret-looking names. */}}
{{- define "fluxgate.config.extra" -}}
{{- range $name, $value := . }}
{{- include "fluxgate.assertNotSecret" $name }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{- define "fluxgate.config.shared" -}}
{{- $c := .Values.config -}}
FLUXGATE_ENV: {{ $c.env | quote }}
FLUXGATE_AUTH: {{ $c.auth | toString | quote }}
FLUXGATE_PUBLIC_URL: {{ $c.publicUrl | quote }}
FLUXGATE_PUBLIC_WS_URL: {{ $c.publicWsUrl | quote }}
FLUXGATE_JOB_TTL_S: {{ $c.jobTtlS | toString | quote }}
FLUXGATE_FAIR_SHARE: {{ $c.fairShare | toString | quote }}
FLUXGATE_FAIR_SHARE_READY: {{ $c.fairShareReady | toString | quote }}
FLUXGATE_BROKER_VISIBILITY_TIMEOUT_S: {{ $c.brokerVisibilityTimeoutS | toString | quote }}
FLUXGATE_WEBHOOK_ALLOW: {{ $c.webhookAllow | quote }}
FLUXGATE_LOG_LEVEL: {{ $c.logLevel | quote }}
FLUXGATE_FORWARDED_ALLOW_IPS: {{ $c.forwardedAllowIps | quote }}
FLUXGATE_LOG_JSON: {{ $c.logJson | toString | quote }}
FLUXGATE_OTEL_ENDPOINT: {{ $c.otelEndpoint | quote }}
FLUXGATE_INPUT_IMAGE_MAX_BYTES: {{ $c.inputImageMaxBytes | int64 | toString | quote }}
FLUXGATE_INPUT_IMAGE_MAX_PIXELS: {{ $c.inputImageMaxPixels | int64 | toString | quote }}
FLUXGATE_TRANSLATE_MODEL: {{ $c.translateModel | quote }}
{{- $m := .Values.models }}
{{- if $m.served }}
FLUXGATE_MODELS: {{ dict "default" ($m.default | default (first $m.served).id) "models" $m.served | toJson | quote }}
{{- end }}
{{- if $m.loraVolume.existingClaim }}
FLUXGATE_LORA_DIR: {{ $m.loraVolume.mountPath | quote }}
{{- end }}
FLUXGATE_MAX_LORAS: {{ $m.maxLoras | toString | quote }}
FLUXGATE_LORA_MAX_SCALE: {{ $m.loraMaxScale | toString | quote }}
FLUXGATE_BALANCER_URL: {{ printf "http://%s:%v" (include "fluxgate.serviceHost" (dict "root" . "component" "balancer")) .Values.balancer.port | quote }}
FLUXGATE_NOTIFIER_URL: {{ printf "http://%s:%v" (include "fluxgate.serviceHost" (dict "root" . "component" "notifier")) .Values.notifier.port | quote }}
{{- if .Values.outputs.s3.enabled }}
{{- $s3 := .Values.outputs.s3 }}
FLUXGATE_OUTPUT_DIR: {{ printf "s3://%s/%s" $s3.bucket (trimAll "/" $s3.prefix) | trimSuffix "/" | quote }}
{{- with $s3.endpoint }}
FLUXGATE_S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- with $s3.region }}
FLUXGATE_S3_REGION: {{ . | quote }}
{{- end }}
FLUXGATE_S3_URL_MODE: {{ $s3.urlMode | default "presigned" | quote }}
{{- else }}
FLUXGATE_OUTPUT_DIR: {{ .Values.outputs.volume.mountPath | quote }}
{{- end }}
{{- include "fluxgate.config.extra" $c.extra }}
{{- end -}}

{{- define "fluxgate.config.gateway" -}}
{{- $g := .Values.gateway -}}
FLUXGATE_GATEWAY_HOST: "0.0.0.0"
FLUXGATE_GATEWAY_PORT: {{ $g.port | toString | quote }}
FLUXGATE_GATEWAY_MAX_BODY_BYTES: {{ $g.maxBodyBytes | int64 | toString | quote }}
FLUXGATE_GATEWAY_MAX_UPLOAD_BYTES: {{ $g.maxUploadBytes | int64 | toString | quote }}
FLUXGATE_MAX_JOB_COST: {{ $g.maxJobCost | toString | quote }}
FLUXGATE_REDIS_WAIT_REPLICAS: {{ $g.waitReplicas | toString | quote }}
FLUXGATE_REDIS_WAIT_TIMEOUT_MS: {{ $g.waitTimeoutMs | toString | quote }}
FLUXGATE_GATEWAY_KEY_CACHE_S: {{ $g.keyCacheSeconds | toString | quote }}
FLUXGATE_CORS_ORIGINS: {{ join "," $g.corsOrigins | quote }}
{{- include "fluxgate.config.extra" $g.extraConfig }}
{{- end -}}

{{- define "fluxgate.config.notifier" -}}
{{- $n := .Values.notifier -}}
FLUXGATE_NOTIFIER_HOST: "0.0.0.0"
FLUXGATE_NOTIFIER_PORT: {{ $n.port | toString | quote }}
FLUXGATE_NOTIFIER_MAX_WAIT_S: {{ $n.maxWaitS | toString | quote }}
FLUXGATE_NOTIFIER_SWEEP_INTERVAL_S: {{ $n.sweepIntervalS | toString | quote }}
{{- include "fluxgate.config.extra" $n.extraConfig }}
{{- end -}}

{{- define "fluxgate.config.balancer" -}}
{{- $b := .Values.balancer -}}
FLUXGATE_BALANCER_HOST: "0.0.0.0"
FLUXGATE_BALANCER_PORT: {{ $b.port | toString | quote }}
# No static backends: the inference pods are discovered through their headless Service.
FLUXGATE_BALANCER_BACKENDS: {{ join "," $b.staticBackends | quote }}
FLUXGATE_BALANCER_DISCOVERY_DNS: {{ printf "%s.%s.svc.%s:%v" (include "fluxgate.inferenceHeadless" .) .Release.Namespace .Values.clusterDomain .Values.inference.port | quote }}
FLUXGATE_BALANCER_DISCOVERY_INTERVAL_S: {{ $b.discoveryIntervalS | toString | quote }}
FLUXGATE_BALANCER_POLICY: {{ $b.policy | quote }}
FLUXGATE_BALANCER_AFFINITY: {{ $b.modelAffinity | toString | quote }}
FLUXGATE_BALANCER_AFFINITY_BATCHES: {{ $b.modelAffinityBatches | toString | quote }}
{{- include "fluxgate.config.extra" $b.extraConfig }}
{{- end -}}

{{- define "fluxgate.config.inference" -}}
{{- $i := .Values.inference -}}
FLUXGATE_INFERENCE_HOST: "0.0.0.0"
FLUXGATE_INFERENCE_PORT: {{ $i.port | toString | quote }}
FLUXGATE_FLUX_MODEL: {{ $i.model | quote }}
FLUXGATE_MODEL_CACHE_DIR: {{ printf "%s/models" $i.cache.mountPath | quote }}
HF_HOME: {{ printf "%s/huggingface" $i.cache.mountPath | quote }}
FLUXGATE_INFERENCE_DEVICE: {{ $i.device | quote }}
FLUXGATE_INFERENCE_DTYPE: {{ $i.dtype | quote }}
{{- with $i.maxBatchSize }}
FLUXGATE_INFERENCE_MAX_BATCH_SIZE: {{ . | toString | quote }}
{{- end }}
FLUXGATE_INFERENCE_SCHEDULER: {{ $i.scheduler | quote }}
FLUXGATE_INFERENCE_PREVIEW_INTERVAL_MS: {{ $i.previewIntervalMs | toString | quote }}
FLUXGATE_INFERENCE_MAX_WAIT_MS: {{ $i.maxWaitMs | toString | quote }}
FLUXGATE_INFERENCE_BATCH_GAP_MS: {{ $i.batchGapMs | toString | quote }}
FLUXGATE_INFERENCE_STEP_DELAY_MS: {{ $i.stepDelayMs | toString | quote }}
FLUXGATE_INFERENCE_WARMUP: {{ $i.warmup | toString | quote }}
FLUXGATE_INFERENCE_CPU_OFFLOAD: {{ $i.cpuOffload | toString | quote }}
FLUXGATE_INFERENCE_COMPILE: {{ $i.compile | toString | quote }}
FLUXGATE_INFERENCE_MODELS: {{ join "," $i.serves | quote }}
FLUXGATE_INFERENCE_MAX_MODELS: {{ $i.maxModels | toString | quote }}
FLUXGATE_INFERENCE_MAX_ADAPTERS: {{ $i.maxAdapters | toString | quote }}
{{- include "fluxgate.config.extra" $i.extraConfig }}
{{- end -}}

{{- define "fluxgate.config.worker" -}}
{{- $w := .Values.workers -}}
FLUXGATE_WORKER_METRICS_HOST: "0.0.0.0"
FLUXGATE_WORKER_METRICS_PORT: {{ $w.metricsPort | toString | quote }}
FLUXGATE_JOB_SOFT_TIME_LIMIT_S: {{ $w.jobSoftTimeLimitS | toString | quote }}
FLUXGATE_JOB_TIME_LIMIT_S: {{ $w.jobTimeLimitS | toString | quote }}
FLUXGATE_WORKER_MAX_RETRIES: {{ $w.maxRetries | toString | quote }}
FLUXGATE_MAX_CAPACITY_WAIT_S: {{ $w.maxCapacityWaitS | toString | quote }}
FLUXGATE_WORKER_CAPACITY_SLICE_S: {{ $w.capacitySliceS | toString | quote }}
FLUXGATE_WORKER_PREVIEW_INTERVAL_MS: {{ $w.previewIntervalMs | toString | quote }}
FLUXGATE_WORKER_HEARTBEAT_S: {{ $w.heartbeatS | toString | quote }}
FLUXGATE_WORKER_LEASE_S: {{ $w.leaseS | toString | quote }}
FLUXGATE_LLM_URL: {{ $w.llm.url | quote }}
FLUXGATE_LLM_MODEL: {{ $w.llm.model | quote }}
FLUXGATE_LLM_TIMEOUT_S: {{ $w.llm.timeoutS | toString | quote }}
{{- include "fluxgate.config.extra" $w.extraConfig }}
{{- end -}}
