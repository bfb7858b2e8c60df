{{/*
Named templates. Every one takes a context dict:
  (dict "root" $ "values" <this chart's values>)
In this chart that is (dict "root" $ "values" .Values); a parent chart that depends on this one
passes (dict "root" $ "values" (index .Values "shutdown-sidecar")). Names derive from the release
and a fixed "shutdown-sidecar", never from .Chart, so both callers name the same objects.
*/}}

{{- define "shutdown-sidecar.fullname" -}}
{{- $v := .values -}}
{{- if $v.fullnameOverride -}}
{{- $v.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "shutdown-sidecar" $v.nameOverride -}}
{{- if contains $name .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "shutdown-sidecar.name" -}}
{{- default "shutdown-sidecar" .values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shutdown-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shutdown-sidecar.name" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "shutdown-sidecar.labels" -}}
{{ include "shutdown-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ include "shutdown-sidecar.sidecarTag" . | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "shutdown-sidecar-%s" (.root.Chart.Version | replace "+" "_") | trunc 63 | trimSuffix "-" }}
{{- with .values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
An image reference: [registry/]repository, then @digest when set (a digest pins the content, so it
wins over the tag), else :tag. Takes (dict "image" <image values> "global" <global values>), and
optionally "defaultRegistry" (after the image's registry and global.imageRegistry, and not when the
repository names its own registry host, by Docker's rule: a first part with "." or ":", or
"localhost") and "defaultTag".
*/}}
{{- define "shutdown-sidecar.imageRef" -}}
{{- $registry := .image.registry | default (dig "imageRegistry" "" (.global | default dict)) -}}
{{- $parts := splitList "/" .image.repository -}}
{{- $host := first $parts -}}
{{- $namesHost := and (gt (len $parts) 1) (or (contains "." $host) (contains ":" $host) (eq $host "localhost")) -}}
{{- if not (or $registry $namesHost) -}}
{{- $registry = .defaultRegistry -}}
{{- end -}}
{{- $tag := .image.tag | default .defaultTag -}}
{{- $repository := .image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- if not (or $tag .image.digest) -}}
{{- fail (printf "image %s: set its tag or its digest" $repository) -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The sidecar's image tag: its own, else the chart's appVersion (the release that published both). */}}
{{- define "shutdown-sidecar.sidecarTag" -}}
{{- .values.sidecar.image.tag | default .root.Chart.AppVersion -}}
{{- end -}}

{{/* The sidecar's image: by default where the release workflow publishes it, ghcr.io. */}}
{{- define "shutdown-sidecar.sidecarImage" -}}
{{- $tag := include "shutdown-sidecar.sidecarTag" . -}}
{{- include "shutdown-sidecar.imageRef" (dict "image" .values.sidecar.image "global" .values.global "defaultRegistry" "ghcr.io" "defaultTag" $tag) -}}
{{- end -}}

{{/* The app's image: its own, or (empty repository) the sidecar's, which carries the demo app. */}}
{{- define "shutdown-sidecar.appImage" -}}
{{- if .values.app.image.repository -}}
{{- include "shutdown-sidecar.imageRef" (dict "image" .values.app.image "global" .values.global) -}}
{{- else -}}
{{- include "shutdown-sidecar.sidecarImage" . -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets entries: global first, then the chart's; names or {name: ...} objects. */}}
{{- define "shutdown-sidecar.imagePullSecrets" -}}
{{- $secrets := concat (dig "imagePullSecrets" list (.values.global | default dict)) (.values.imagePullSecrets | default list) -}}
{{- range $secrets }}
{{- if kindIs "string" . }}
- name: {{ . | quote }}
{{- else }}
- name: {{ .name | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The pods' service account: the deprecated serviceAccountName, the named or created one, or default. */}}
{{- define "shutdown-sidecar.serviceAccountName" -}}
{{- $sa := .values.serviceAccount -}}
{{- if .values.serviceAccountName -}}
{{- .values.serviceAccountName -}}
{{- else if $sa.create -}}
{{- $sa.name | default (include "shutdown-sidecar.fullname" .) -}}
{{- else -}}
{{- $sa.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the admin token: an existing one, or the one this chart creates. */}}
{{- define "shutdown-sidecar.adminTokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "shutdown-sidecar.fullname" .)) .values.sidecar.adminToken.existingSecret -}}
{{- end -}}

{{/*
The admin token. Kubernetes httpGet hooks take literal header values only (no secretKeyRef), so the
app's preStop hook needs it when rendering. In order:
  - sidecar.adminToken.value;
  - existingSecret, read with lookup (a cluster is needed: `helm template` and client dry runs find
    nothing, and rendering fails saying so);
  - otherwise derived from the namespace and the full name: the same on every upgrade and every
    offline render (GitOps tools render without a cluster; a random or lookup-kept token would change
    the pod template on each sync and roll the pods), but computable by anyone who knows both names.
    README "The admin token" says what that protects against.
With existingSecret and value both set, a Secret that lookup can read must hold that value.
The token must be what the sidecar accepts (config.py parse_admin_token: printable ASCII without
spaces), or the sidecar exits 2 and the pod never starts. The schema refuses a bad `value`; a Secret
read with lookup is checked here. Failing, not trimming: the sidecar reads the Secret as it is
(secretKeyRef), so trimming could only change the hook's header, never what the sidecar refuses.
*/}}
{{- define "shutdown-sidecar.adminTokenValue" -}}
{{- $t := .values.sidecar.adminToken -}}
{{- $ns := .root.Release.Namespace -}}
{{- if $t.existingSecret -}}
{{- $secret := lookup "v1" "Secret" $ns $t.existingSecret -}}
{{- $data := dig "data" $t.secretKey "" ($secret | default dict) -}}
{{- if $data -}}
{{- if not (regexMatch "^[!-~]+$" ($data | b64dec)) -}}
{{- fail (printf "sidecar.adminToken: Secret %s/%s key %q must be printable ASCII without spaces (a bearer token); a trailing newline counts (kubectl create secret --from-file keeps it): the sidecar reads the Secret as it is and would exit 2" $ns $t.existingSecret $t.secretKey) -}}
{{- end -}}
{{- if and $t.value (ne $t.value ($data | b64dec)) -}}
{{- fail (printf "sidecar.adminToken: Secret %s/%s key %q differs from sidecar.adminToken.value: the sidecar would refuse the preStop hook's token" $ns $t.existingSecret $t.secretKey) -}}
{{- end -}}
{{- $data | b64dec -}}
{{- else if $t.value -}}
{{- include "shutdown-sidecar.checkedAdminTokenValue" $t.value -}}
{{- else -}}
{{- fail (printf "sidecar.adminToken: the app's preStop hook needs the token when rendering (httpGet headers cannot reference a Secret), and Secret %s/%s key %q was not found; set sidecar.adminToken.value or create the Secret first" $ns $t.existingSecret $t.secretKey) -}}
{{- end -}}
{{- else if $t.value -}}
{{- include "shutdown-sidecar.checkedAdminTokenValue" $t.value -}}
{{- else -}}
{{- printf "shutdown-sidecar/admin-token/v1/%s/%s" $ns (include "shutdown-sidecar.fullname" .) | sha256sum -}}
{{- end -}}
{{- end -}}

{{/* sidecar.adminToken.value as given, when the sidecar accepts it. The schema already refuses a bad
one; this catches renders that skip the schema (--skip-schema-validation) with the same words. */}}
{{- define "shutdown-sidecar.checkedAdminTokenValue" -}}
{{- if not (regexMatch "^[!-~]+$" .) -}}
{{- fail "sidecar.adminToken.value: must be printable ASCII without spaces (a bearer token)" -}}
{{- end -}}
{{- . -}}
{{- end -}}

{{/*
Timing, checked when rendering. Renders nothing; fails with the numbers when the grace period cannot
hold the prestop delay, the expected drain and the report reserve.
*/}}
{{- define "shutdown-sidecar.checkTiming" -}}
{{- $v := .values -}}
{{- $grace := float64 $v.terminationGracePeriodSeconds -}}
{{- $auto := eq (toString $v.prestopDelaySeconds) "auto" -}}
{{- $delay := 0.0 -}}
{{- $what := printf "prestopDelaySeconds (%v)" $v.prestopDelaySeconds -}}
{{- if $auto -}}
{{- $delay = float64 $v.prestopHold.maxSeconds -}}
{{- $what = printf "prestopHold.maxSeconds (%v, prestopDelaySeconds: auto)" $v.prestopHold.maxSeconds -}}
{{- if gt (float64 $v.prestopHold.minSeconds) $delay -}}
{{- fail (printf "timing: prestopHold.minSeconds (%v) must not exceed prestopHold.maxSeconds (%v), or the sidecar refuses to start" $v.prestopHold.minSeconds $v.prestopHold.maxSeconds) -}}
{{- end -}}
{{- if not $v.sidecar.watchAppPort -}}
{{- fail "timing: prestopDelaySeconds: auto (the default) counts the connections to the app port: it needs sidecar.watchAppPort: true; with watchAppPort: false set a fixed prestopDelaySeconds (e.g. 5)" -}}
{{- end -}}
{{- else -}}
{{- $delay = float64 $v.prestopDelaySeconds -}}
{{- end -}}
{{- $drain := float64 $v.expectedDrainSeconds -}}
{{- $reserve := float64 $v.reportReserveSeconds -}}
{{- $needed := addf $delay $drain $reserve -}}
{{- if lt $grace $needed -}}
{{- fail (printf "timing: terminationGracePeriodSeconds (%v) must be at least %s + expectedDrainSeconds (%v) + reportReserveSeconds (%v) = %v" $v.terminationGracePeriodSeconds $what $v.expectedDrainSeconds $v.reportReserveSeconds $needed) -}}
{{- end -}}
{{- if ge (addf $delay $reserve) $grace -}}
{{- fail (printf "timing: %s + reportReserveSeconds (%v) must be less than terminationGracePeriodSeconds (%v), or the sidecar refuses to start" $what $v.reportReserveSeconds $v.terminationGracePeriodSeconds) -}}
{{- end -}}
{{- end -}}

{{/* The app container's lifecycle: preStop holds its SIGTERM until t0 + prestop delay. */}}
{{- define "shutdown-sidecar.appLifecycle" -}}
{{- include "shutdown-sidecar.checkTiming" . -}}
preStop:
  httpGet:
    path: /prestop
    port: {{ .values.sidecar.port }}
    scheme: HTTP
    {{- if .values.sidecar.adminToken.enabled }}
    httpHeaders:
      - name: Authorization
        value: {{ printf "Bearer %s" (include "shutdown-sidecar.adminTokenValue" .) | quote }}
    {{- end }}
{{- end -}}

{{/* The sidecar's probes; the readinessProbe is what takes the pod out of endpoints at t0. */}}
{{- define "shutdown-sidecar.sidecarProbes" -}}
{{- $s := .values.sidecar -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: sidecar-admin
  {{- toYaml $s.readinessProbe | nindent 2 }}
livenessProbe:
  httpGet:
    path: /livez
    port: sidecar-admin
  {{- toYaml $s.livenessProbe | nindent 2 }}
startupProbe:
  httpGet:
    path: /startupz
    port: sidecar-admin
  {{- toYaml $s.startupProbe | nindent 2 }}
{{- end -}}

{{/* The sidecar's arguments after the image's CMD `serve`. */}}
{{- define "shutdown-sidecar.sidecarArgs" -}}
{{- $v := .values -}}
{{- $s := $v.sidecar -}}
- serve
- --port={{ $s.port }}
- --grace-period={{ $v.terminationGracePeriodSeconds }}
- --prestop-delay={{ $v.prestopDelaySeconds }}
{{- if eq (toString $v.prestopDelaySeconds) "auto" }}
- --prestop-delay-min={{ $v.prestopHold.minSeconds }}
- --prestop-delay-max={{ $v.prestopHold.maxSeconds }}
- --prestop-quiet-confidence={{ $v.prestopHold.quietConfidence }}
- --prestop-evidence={{ $v.prestopHold.evidence }}
{{- end }}
- --report-reserve={{ $v.reportReserveSeconds }}
- --log-format={{ $s.logFormat }}
- --log-level={{ $s.logLevel }}
{{- if $s.watchAppPort }}
{{- $port := $s.appPort | default (index $v.app.ports 0).containerPort }}
- --app-port={{ $port }}
{{- end }}
{{- if and $s.nativeSidecarFlag (eq $s.mode "native") }}
- --native-sidecar=true
{{- end }}
{{- with include "shutdown-sidecar.processWatchPattern" . }}
- {{ printf "--watch-process=%s" . | quote }}
{{- end }}
{{- if gt (float64 $s.lingerSeconds) 0.0 }}
- --linger={{ $s.lingerSeconds }}
{{- end }}
{{- range $s.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
The classic sidecar's --watch-process pattern, or empty: then nothing watches the app's process
and the pod does not share its process namespace. watchProcess, else the app's command and args
(the demo's when no image is given) joined as the kernel shows a command line, and escaped: the
app container's main process is the lowest PID whose command line holds them. With neither (the
image's own entrypoint), nothing is known to look for.
*/}}
{{- define "shutdown-sidecar.processWatchPattern" -}}
{{- $s := .values.sidecar -}}
{{- $app := .values.app -}}
{{- if and (eq $s.mode "classic") $s.watchAppProcess -}}
{{- if $s.watchProcess -}}
{{- $s.watchProcess -}}
{{- else if or $app.command $app.args -}}
{{- concat ($app.command | default list) ($app.args | default list) | join " " | regexQuoteMeta -}}
{{- else if not $app.image.repository -}}
{{- regexQuoteMeta "sidecar.demo" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Native sidecars (restartable init containers) are on by default from Kubernetes 1.29. An older API
server drops restartPolicy from an init container, which then blocks the app from ever starting.
*/}}
{{- define "shutdown-sidecar.checkMode" -}}
{{- if and (eq .values.sidecar.mode "native") (semverCompare "<1.29.0-0" .root.Capabilities.KubeVersion.Version) -}}
{{- fail (printf "sidecar.mode=native needs Kubernetes >= 1.29 (this is %s): set sidecar.mode=classic" .root.Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}

{{/*
The sidecar container. In native mode it carries restartPolicy: Always and belongs in
initContainers; in classic mode it belongs in containers.
*/}}
{{- define "shutdown-sidecar.sidecarContainer" -}}
{{- include "shutdown-sidecar.checkTiming" . -}}
{{- include "shutdown-sidecar.checkMode" . -}}
{{- $s := .values.sidecar -}}
name: shutdown-sidecar
image: {{ include "shutdown-sidecar.sidecarImage" . | quote }}
imagePullPolicy: {{ $s.image.pullPolicy }}
{{- if eq $s.mode "native" }}
restartPolicy: Always
{{- end }}
args:
  {{- include "shutdown-sidecar.sidecarArgs" . | nindent 2 }}
ports:
  - name: sidecar-admin
    containerPort: {{ $s.port }}
    protocol: TCP
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  - name: NODE_NAME
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
  # The kubelet probes the app port from the node's address: those connections are not traffic
  # for the arrivals the hold is decided on (--node-ip).
  - name: HOST_IP
    valueFrom:
      fieldRef:
        fieldPath: status.hostIP
  - name: SIDECAR_WORKLOAD  # the Pushgateway grouping key; the pod name's suffixes can mislead
    value: {{ include "shutdown-sidecar.fullname" . | quote }}
  {{- if $s.adminToken.enabled }}
  - name: SIDECAR_ADMIN_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ include "shutdown-sidecar.adminTokenSecretName" . }}
        key: {{ $s.adminToken.secretKey }}
  {{- end }}
  {{- with $s.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $s.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- include "shutdown-sidecar.sidecarProbes" . | nindent 0 }}
resources:
  {{- toYaml $s.resources | nindent 2 }}
securityContext:
  {{- toYaml $s.securityContext | nindent 2 }}
{{- with $s.extraVolumeMounts }}
volumeMounts:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
