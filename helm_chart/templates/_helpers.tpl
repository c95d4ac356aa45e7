{{/* Labels every object of a component carries. */}}
{{- define "streamproc.labels" -}}
app.kubernetes.io/name: streamproc
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{/* What a component's pods are selected by (never changes on upgrade). */}}
{{- define "streamproc.selector" -}}
app.kubernetes.io/name: streamproc
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* <release>-<component>, e.g. streamproc-event-api as in the Go version. */}}
{{- define "streamproc.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streamproc.image" -}}
{{- $image := .root.Values.image }}
{{- $tag := $image.tag | default .root.Chart.AppVersion }}
{{- if $image.registry }}
{{- printf "%s/%s/%s:%s" $image.registry $image.repository .component $tag }}
{{- else }}
{{- printf "%s/%s:%s" $image.repository .component $tag }}
{{- end }}
{{- end }}

{{- define "streamproc.secretName" -}}
{{- .Values.credentials.existingSecret | default (printf "%s-credentials" .Release.Name) }}
{{- end }}

{{- define "streamproc.kafkaBrokers" -}}
{{- if .Values.kafka.enabled }}
{{- printf "%s-kafka:9092" .Release.Name }}
{{- else }}
{{- required "kafka.external.brokers is required when kafka.enabled is false" .Values.kafka.external.brokers }}
{{- end }}
{{- end }}

{{- define "streamproc.postgresHost" -}}
{{- if .Values.timescaledb.enabled }}
{{- printf "%s-timescaledb" .Release.Name }}
{{- else }}
{{- required "timescaledb.external.host is required when timescaledb.enabled is false" .Values.timescaledb.external.host }}
{{- end }}
{{- end }}

{{- define "streamproc.influxdbUrl" -}}
{{- if .Values.influxdb.enabled }}
{{- printf "http://%s-influxdb:8086" .Release.Name }}
{{- else }}
{{- required "influxdb.external.url is required when influxdb.enabled is false" .Values.influxdb.external.url }}
{{- end }}
{{- end }}

{{/* Pod and container hardening shared by the infrastructure workloads. */}}
{{- define "streamproc.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Settings of one service, as environment variables (not credentials). */}}
{{- define "streamproc.env" -}}
{{- $root := .root }}
{{- $svc := .svc }}
HOST: "0.0.0.0"
PORT: {{ .containerPort | quote }}
DISABLE: {{ $svc.disable | quote }}
{{- if has .name (list "event-api" "consumer-high" "consumer-low") }}
KAFKA_BROKERS: {{ include "streamproc.kafkaBrokers" $root | quote }}
KAFKA_TOPIC: {{ $root.Values.kafka.topic | quote }}
KAFKA_IDEMPOTENCE: {{ $root.Values.kafka.idempotence | quote }}
{{- end }}
{{- if eq .name "event-api" }}
KAFKA_PARTITIONS: {{ $root.Values.kafka.partitions | quote }}
KAFKA_REPLICATION_FACTOR: {{ $root.Values.kafka.replicationFactor | quote }}
{{- end }}
{{- if has .name (list "consumer-high" "consumer-low") }}
KAFKA_DLQ_TOPIC: {{ $root.Values.kafka.deadLetterTopic | quote }}
WATERMARK: {{ $root.Values.watermark | quote }}
{{- end }}
{{- if has .name (list "consumer-high" "aggregator") }}
POSTGRES_HOST: {{ include "streamproc.postgresHost" $root | quote }}
POSTGRES_PORT: {{ ternary 5432 $root.Values.timescaledb.external.port $root.Values.timescaledb.enabled | quote }}
POSTGRES_USER: {{ $root.Values.timescaledb.user | quote }}
POSTGRES_DB: {{ $root.Values.timescaledb.database | quote }}
POSTGRES_USE_SSL: {{ and (not $root.Values.timescaledb.enabled) $root.Values.timescaledb.external.useSsl | quote }}
{{- end }}
{{- if has .name (list "consumer-low" "aggregator") }}
INFLUXDB_HOST: {{ include "streamproc.influxdbUrl" $root | quote }}
INFLUXDB_DB: {{ $root.Values.influxdb.database | quote }}
{{- end }}
{{- if eq .name "event-producer" }}
API_HOST: {{ include "streamproc.fullname" (dict "root" $root "component" "event-api") | quote }}
API_PORT: {{ (index $root.Values.services "event-api").port | quote }}
RATE: {{ $svc.rate | quote }}
{{- end }}
{{- if eq .name "web-ui" }}
AGGREGATOR_URL: {{ printf "http://%s:%v" (include "streamproc.fullname" (dict "root" $root "component" "aggregator")) $root.Values.services.aggregator.port | quote }}
{{- end }}
{{- range $key, $value := $svc.env }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
