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

{{/* <release>-<component>, e.g. streamproc-event-api as in the Go version:
the one name of every object of a component, and of every reference to it
(Services, ConfigMaps, Secrets, host names in settings). Names stay valid
DNS-1035 labels for every release name Helm accepts (up to 53 characters):
a name longer than `max` (63, the limit of a Service name; 52 for a
StatefulSet, whose pods carry its name plus a revision hash in a
63-character label) keeps the whole component and as much of the release
name as fits, plus 5 hex digits of a hash of the release name, so two
components (consumer-high, consumer-low) or two long releases never end up
with the same name; dots become dashes, with the hash too (a.b and a-b are
two releases). */}}
{{- define "streamproc.fullname" -}}
{{- $max := int (.max | default 63) }}
{{- $release := .root.Release.Name | replace "." "-" }}
{{- if not (regexMatch "^[a-z]" $release) }}
{{- fail (printf "release name %q must start with a letter: the chart's Service names (<release>-<component>) are DNS-1035 labels" .root.Release.Name) }}
{{- end }}
{{- $name := printf "%s-%s" $release .component }}
{{- if or (gt (len $name) $max) (contains "." .root.Release.Name) }}
{{- $keep := int (sub (sub $max (len .component)) 7) }}
{{- $name = printf "%s-%s-%s" (trunc $keep $release | trimAll "-") (sha256sum .root.Release.Name | trunc 5) .component }}
{{- end }}
{{- $name }}
{{- end }}

{{/* The name of a StatefulSet (at most 52 characters, see above). */}}
{{- define "streamproc.statefulsetName" -}}
{{- include "streamproc.fullname" (dict "root" .root "component" .component "max" 52) }}
{{- end }}

{{/* Whether the named service (event-api, aggregator, ...) is part of the
release (services.<name>.enabled): "true" or empty. */}}
{{- define "streamproc.serviceEnabled" -}}
{{- if (index .root.Values.services .name).enabled }}true{{ end }}
{{- end }}

{{/* http://<Service>:<port> of one of the chart's own services. */}}
{{- define "streamproc.serviceUrl" -}}
{{- printf "http://%s:%v" (include "streamproc.fullname" (dict "root" .root "component" .name)) (index .root.Values.services .name).port }}
{{- end }}

{{- /* The headless Service of a component whose replicas the pipeline view
probes one by one (services.yaml). */}}
{{- define "streamproc.podsServiceName" -}}
{{- include "streamproc.fullname" (dict "root" .root "component" (printf "%s-pods" .component)) }}
{{- end }}

{{- /* http://<component>-pods:<port>: every replica's address. */}}
{{- define "streamproc.podsUrl" -}}
{{- printf "http://%s:%v" (include "streamproc.podsServiceName" (dict "root" .root "component" .name)) (index .root.Values.services .name).port }}
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
{{- .Values.credentials.existingSecret | default (include "streamproc.fullname" (dict "root" . "component" "credentials")) }}
{{- end }}

{{- define "streamproc.kafkaBrokers" -}}
{{- if .Values.kafka.enabled }}
{{- printf "%s:9092" (include "streamproc.fullname" (dict "root" . "component" "kafka")) }}
{{- else }}
{{- required "kafka.external.brokers is required when kafka.enabled is false" .Values.kafka.external.brokers }}
{{- end }}
{{- end }}

{{- define "streamproc.postgresHost" -}}
{{- if .Values.timescaledb.enabled }}
{{- include "streamproc.fullname" (dict "root" . "component" "timescaledb") }}
{{- else }}
{{- required "timescaledb.external.host is required when timescaledb.enabled is false" .Values.timescaledb.external.host }}
{{- end }}
{{- end }}

{{- define "streamproc.influxdbUrl" -}}
{{- if .Values.influxdb.enabled }}
{{- printf "http://%s:8086" (include "streamproc.fullname" (dict "root" . "component" "influxdb")) }}
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

{{/* The bearer token a service needs while auth.enabled: (list key setting)
of the credentials Secret's key and the setting naming the file it is
mounted as; empty when none. */}}
{{- define "streamproc.authToken" -}}
{{- if .root.Values.auth.enabled }}
{{- $tokens := dict "event-api" (list "ingest-token" "API_TOKEN_FILE") "event-producer" (list "ingest-token" "API_TOKEN_FILE") "aggregator" (list "aggregator-token" "API_TOKEN_FILE") "web-ui" (list "aggregator-token" "AGGREGATOR_TOKEN_FILE") }}
{{- with get $tokens .name }}{{ join " " . }}{{ end }}
{{- end }}
{{- end }}

{{/* Where a service's bearer token file is mounted. */}}
{{- define "streamproc.authDir" -}}
/var/run/secrets/streamproc
{{- end }}

{{/* Settings of one service, as environment variables (not credentials). */}}
{{- define "streamproc.env" -}}
{{- $root := .root }}
{{- $svc := .svc }}
HOST: "0.0.0.0"
PORT: {{ .containerPort | quote }}
DISABLE: {{ $svc.disable | quote }}
LOG_FORMAT: {{ $root.Values.logFormat | quote }}
HEADER_READ_TIMEOUT: {{ $svc.connections.headerReadTimeout | quote }}
IDLE_TIMEOUT: {{ $svc.connections.idleTimeout | quote }}
MAX_CONNECTIONS: {{ $svc.connections.maxConnections | quote }}
{{- if has .name (list "event-api" "consumer-high" "consumer-low" "aggregator") }}
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
FETCH_WAIT_MAX: {{ $root.Values.kafka.fetchWaitMax | quote }}
WATERMARK: {{ $root.Values.watermark | quote }}
{{- end }}
{{- if has .name (list "consumer-high" "aggregator") }}
POSTGRES_HOST: {{ include "streamproc.postgresHost" $root | quote }}
POSTGRES_PORT: {{ ternary 5432 $root.Values.timescaledb.external.port $root.Values.timescaledb.enabled | quote }}
{{- if and (eq .name "aggregator") $root.Values.readOnlyUsers.enabled }}
POSTGRES_USER: {{ $root.Values.readOnlyUsers.postgresUser | quote }}
{{- else }}
POSTGRES_USER: {{ $root.Values.timescaledb.user | quote }}
{{- end }}
POSTGRES_DB: {{ $root.Values.timescaledb.database | quote }}
POSTGRES_USE_SSL: {{ and (not $root.Values.timescaledb.enabled) $root.Values.timescaledb.external.useSsl | quote }}
{{- end }}
{{- if has .name (list "consumer-low" "aggregator") }}
INFLUXDB_HOST: {{ include "streamproc.influxdbUrl" $root | quote }}
INFLUXDB_DB: {{ $root.Values.influxdb.database | quote }}
{{- if and (eq .name "aggregator") $root.Values.readOnlyUsers.enabled }}
INFLUXDB_USER: {{ $root.Values.readOnlyUsers.influxdbUser | quote }}
{{- end }}
{{- end }}
{{- if eq .name "aggregator" }}
{{- /* The pipeline watch: both groups' lag (the consumers' default group
ids) and the dead letters from Kafka; every replica of event-api (readiness
and counters) and of each consumer (readiness), through their headless
Services. */}}
KAFKA_DLQ_TOPIC: {{ $root.Values.kafka.deadLetterTopic | quote }}
{{- if include "streamproc.serviceEnabled" (dict "root" $root "name" "event-api") }}
API_URL: {{ include "streamproc.podsUrl" (dict "root" $root "name" "event-api") | quote }}
{{- end }}
{{- if include "streamproc.serviceEnabled" (dict "root" $root "name" "consumer-high") }}
CONSUMER_HIGH_URL: {{ include "streamproc.podsUrl" (dict "root" $root "name" "consumer-high") | quote }}
{{- end }}
{{- if include "streamproc.serviceEnabled" (dict "root" $root "name" "consumer-low") }}
CONSUMER_LOW_URL: {{ include "streamproc.podsUrl" (dict "root" $root "name" "consumer-low") | quote }}
{{- end }}
{{- end }}
{{- if eq .name "event-producer" }}
API_HOST: {{ include "streamproc.fullname" (dict "root" $root "component" "event-api") | quote }}
API_PORT: {{ (index $root.Values.services "event-api").port | quote }}
RATE: {{ $svc.rate | quote }}
{{- end }}
{{- if eq .name "web-ui" }}
AGGREGATOR_URL: {{ include "streamproc.serviceUrl" (dict "root" $root "name" "aggregator") | quote }}
{{- end }}
{{- with include "streamproc.authToken" (dict "root" $root "name" .name) }}
{{- $token := splitList " " . }}
{{ index $token 1 }}: {{ printf "%s/%s" (include "streamproc.authDir" $root) (index $token 0) | quote }}
{{- end }}
{{- range $key, $value := $svc.env }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
