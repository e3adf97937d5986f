{{/* Chart name, truncated to what a label value allows. */}}
{{- define "devstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-devstream, or the release name alone when it already holds the chart name.
Kept to 45 characters so "-repo-scaffolding" and "-postgresql" still fit in 63. */}}
{{- define "devstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "devstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "devstream.labels" -}}
helm.sh/chart: {{ include "devstream.chart" . }}
app.kubernetes.io/name: {{ include "devstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: devstream
{{- end }}

{{/* Selector labels: (dict "root" $ "component" "core"). Never change them: Deployments'
selectors are immutable. */}}
{{- define "devstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "devstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "devstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "devstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret the chart makes for values given inline. */}}
{{- define "devstream.secretName" -}}
{{- include "devstream.fullname" . }}
{{- end }}

{{/* Whether that Secret has anything in it. */}}
{{- define "devstream.ownSecretNeeded" -}}
{{- if or (and .Values.auth.apiToken (not .Values.auth.existingSecret))
          (and .Values.encryption.key (not .Values.encryption.existingSecret))
          (and .Values.database.external.url (not .Values.database.external.existingSecret)) -}}
true
{{- end }}
{{- end }}

{{/* Install-time checks. Included by the core Deployment, so every render runs them. */}}
{{- define "devstream.validate" -}}
{{- if not (or .Values.auth.apiToken .Values.auth.existingSecret) }}
{{- fail "\n\nauth: the REST API needs a bearer token (DTM_API_TOKEN); the core refuses to listen beyond loopback without one.\nSet auth.apiToken (e.g. --set auth.apiToken=$(openssl rand -hex 32)) or auth.existingSecret (a Secret with key auth.existingSecretKey, default \"api-token\")." }}
{{- end }}
{{- if not (or .Values.encryption.key .Values.encryption.existingSecret) }}
{{- fail "\n\nencryption: connection secrets are encrypted with a Fernet key (DTM_SECRET_KEY), and there is none.\nSet encryption.key (generate: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())') or encryption.existingSecret (a Secret with key encryption.existingSecretKey, default \"secret-key\").\nKeep the key with your backups: without it stored secrets cannot be read." }}
{{- end }}
{{- if and .Values.encryption.key (not .Values.encryption.existingSecret) (not (regexMatch "^[A-Za-z0-9_-]{43}=$" .Values.encryption.key)) }}
{{- fail "\n\nencryption.key is not a Fernet key: it must be 32 bytes in url-safe base64 (44 characters ending in \"=\").\nGenerate one: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'" }}
{{- end }}
{{- $external := or .Values.database.external.url .Values.database.external.existingSecret }}
{{- if and $external .Values.postgresql.enabled }}
{{- fail "\n\ndatabase: both database.external.* and postgresql.enabled are set; choose one." }}
{{- end }}
{{- if not (or $external .Values.postgresql.enabled) }}
{{- fail "\n\ndatabase: no database. Set database.external.url (postgresql://USER:PASSWORD@HOST:5432/DB) or database.external.existingSecret, or postgresql.enabled=true for a bundled PostgreSQL (evaluation only)." }}
{{- end }}
{{- if and .Values.postgresql.enabled .Values.postgresql.auth.password (not .Values.postgresql.auth.existingSecret) (not (regexMatch "^[A-Za-z0-9._~-]+$" .Values.postgresql.auth.password)) }}
{{- fail "\n\npostgresql.auth.password may hold only A-Z a-z 0-9 . _ ~ - (it is put into the database URL)." }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}
{{- fail "\n\ntls: tls.enabled needs tls.existingSecret, a Secret with ca.crt, tls.crt and tls.key (e.g. from a cert-manager Certificate)." }}
{{- end }}
{{- if not (include "devstream.enabledPlugins" . | fromJsonArray) }}
{{- fail "\n\nplugins: every plugin is disabled; enable at least one (plugins.<name>.enabled=true)." }}
{{- end }}
{{- range $name, $_ := .Values.plugins }}
{{- $p := include "devstream.plugin" (list $ $name) | fromYaml }}
{{- if $p.enabled }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "\n\nplugins.%s: a plugin name must be lower-case letters, digits and dashes (it names Kubernetes resources)." $name) }}
{{- end }}
{{- if not $p.module }}
{{- fail (printf "\n\nplugins.%s: unknown plugin (no module). Known: %s. A plugin of your own needs plugins.%s.module, the module run as python -m plugins.<module>." $name (keys $.Values.plugins | sortAlpha | join ", ") $name) }}
{{- end }}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" (toString $p.module)) }}
{{- fail (printf "\n\nplugins.%s.module: %q is not a Python module name." $name $p.module) }}
{{- end }}
{{- if and $p.autoscaling.enabled $p.autoscaling.targetCPUUtilizationPercentage (not (dig "requests" "cpu" "" ($p.resources | default dict))) }}
{{- fail (printf "\n\nplugins.%s.autoscaling: a CPU target needs plugins.%s.resources.requests.cpu (utilization is measured against it)." $name $name) }}
{{- end }}
{{- if and $p.autoscaling.enabled $p.autoscaling.targetMemoryUtilizationPercentage (not (dig "requests" "memory" "" ($p.resources | default dict))) }}
{{- fail (printf "\n\nplugins.%s.autoscaling: a memory target needs plugins.%s.resources.requests.memory." $name $name) }}
{{- end }}
{{- if and $p.autoscaling.enabled (gt ($p.autoscaling.minReplicas | int) ($p.autoscaling.maxReplicas | int)) }}
{{- fail (printf "\n\nplugins.%s.autoscaling: minReplicas (%v) is above maxReplicas (%v)." $name $p.autoscaling.minReplicas $p.autoscaling.maxReplicas) }}
{{- end }}
{{- if and $p.autoscaling.enabled (not (or $p.autoscaling.targetCPUUtilizationPercentage $p.autoscaling.targetMemoryUtilizationPercentage)) }}
{{- fail (printf "\n\nplugins.%s.autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage." $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Deep merge of two maps, the second winning: maps merged key by key, anything else
(lists, scalars, false, 0, "") replaced. Called as (list BASE OVERRIDE); returns YAML. */}}
{{- define "devstream.merge" -}}
{{- $out := deepCopy (index . 0) }}
{{- range $k, $v := (index . 1) }}
{{- if and (kindIs "map" $v) (kindIs "map" (get $out $k)) }}
{{- $_ := set $out $k (include "devstream.merge" (list (get $out $k) $v) | fromYaml) }}
{{- else }}
{{- $_ := set $out $k $v }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* One plugin's settings: pluginDefaults merged with plugins.<name>. (list $ NAME); YAML. */}}
{{- define "devstream.plugin" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- include "devstream.merge" (list $root.Values.pluginDefaults (index $root.Values.plugins $name | default dict)) }}
{{- end }}

{{/* Names of the enabled plugins, sorted, as a JSON array. */}}
{{- define "devstream.enabledPlugins" -}}
{{- $names := list }}
{{- range $name, $p := .Values.plugins }}
{{- if and $p (kindIs "map" $p) $p.enabled }}
{{- $names = append $names $name }}
{{- end }}
{{- end }}
{{- $names | sortAlpha | toJson }}
{{- end }}

{{/* Resource name of a plugin: (list $ NAME). */}}
{{- define "devstream.pluginFullname" -}}
{{- printf "%s-%s" (include "devstream.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* DTM_REMOTE_PLUGINS: NAME=dns:///SERVICE:7000;... over the enabled plugins. */}}
{{- define "devstream.remotePlugins" -}}
{{- $root := . }}
{{- $items := list }}
{{- range $name := include "devstream.enabledPlugins" . | fromJsonArray }}
{{- $items = append $items (printf "%s=dns:///%s:7000" $name (include "devstream.pluginFullname" (list $root $name))) }}
{{- end }}
{{- join ";" $items }}
{{- end }}

{{/* image reference: (list REPOSITORY TAG) */}}
{{- define "devstream.imageRef" -}}
{{- printf "%s:%s" (index . 0) (toString (index . 1)) }}
{{- end }}

{{- define "devstream.postgresqlFullname" -}}
{{- printf "%s-postgresql" (include "devstream.fullname" .) }}
{{- end }}

{{- define "devstream.postgresqlSecretName" -}}
{{- .Values.postgresql.auth.existingSecret | default (include "devstream.postgresqlFullname" .) }}
{{- end }}

{{/* Whether a PodDisruptionBudget makes sense for this many pods: (list REPLICAS AUTOSCALING). */}}
{{- define "devstream.wantsPdb" -}}
{{- $replicas := index . 0 | int }}
{{- $as := index . 1 | default dict }}
{{- if $as.enabled }}{{ $replicas = $as.minReplicas | int }}{{ end }}
{{- if gt $replicas 1 }}true{{ end }}
{{- end }}

{{/* The /tls volume mounts, shared by the core and plugins. */}}
{{- define "devstream.tlsVolumeMount" -}}
- name: tls
  mountPath: /tls
  readOnly: true
{{- end }}

{{/* secretKeyRef of a value given inline or by existingSecret: (list $ VALUES-SECTION OWN-KEY). */}}
{{- define "devstream.secretKeyRef" -}}
{{- $root := index . 0 }}
{{- $section := index . 1 -}}
secretKeyRef:
  {{- if $section.existingSecret }}
  name: {{ $section.existingSecret }}
  key: {{ $section.existingSecretKey }}
  {{- else }}
  name: {{ include "devstream.secretName" $root }}
  key: {{ index . 2 }}
  {{- end }}
{{- end }}
