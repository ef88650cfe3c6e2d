{{/*
Chart name for the app.kubernetes.io/name label.
*/}}
{{- define "snapshot-job.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every object, by Helm's convention: the release name when it
already contains the chart name (release "snapshot-job" or "kubeshark-snapshot-job"),
else <release>-snapshot-job, so that a release named "kubeshark" never takes
Kubeshark's own object names (kubeshark-cloud-config, ...). 40 characters
leave room for "-restore" within the 52 characters a CronJob name may have.
*/}}
{{- define "snapshot-job.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The cloud settings in effect, as YAML: cloud.* where set, else upstream
Kubeshark's tap.snapshots.cloud.* (so a values file written for Kubeshark
works as it is). Read it with (include "snapshot-job.cloud" . | fromYaml).
*/}}
{{- define "snapshot-job.cloud" -}}
{{- $tap := dig "snapshots" "cloud" dict (.Values.tap | default dict) }}
{{- $cloud := merge (deepCopy .Values.cloud) (deepCopy $tap) }}
{{- toYaml $cloud }}
{{- end }}

{{- define "snapshot-job.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "snapshot-job.selectorLabels" -}}
app.kubernetes.io/name: {{ include "snapshot-job.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "snapshot-job.labels" -}}
helm.sh/chart: {{ include "snapshot-job.chart" . }}
{{ include "snapshot-job.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "snapshot-job.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "snapshot-job.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "snapshot-job.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "snapshot-job.claimName" -}}
{{- .Values.snapshots.existingClaim | default (printf "%s-snapshots" (include "snapshot-job.fullname" .)) }}
{{- end }}

{{/*
Non-secret inline cloud settings as a YAML map of SNAPSHOT_* variables, for
<release>-cloud-config. Only values that are set appear, so an empty inline
value never masks the same key from a referenced ConfigMap.
*/}}
{{- define "snapshot-job.cloudConfigData" -}}
{{- $cloud := include "snapshot-job.cloud" . | fromYaml }}
{{- $s3 := $cloud.s3 }}
{{- $az := $cloud.azblob }}
{{- $gcs := $cloud.gcs | default dict }}
{{- with $s3.bucket }}
SNAPSHOT_AWS_BUCKET: {{ . | quote }}
{{- end }}
{{- with $s3.region }}
SNAPSHOT_AWS_REGION: {{ . | quote }}
{{- end }}
{{- with $s3.roleArn }}
SNAPSHOT_AWS_ROLE_ARN: {{ . | quote }}
{{- end }}
{{- with $s3.externalId }}
SNAPSHOT_AWS_EXTERNAL_ID: {{ . | quote }}
{{- end }}
{{- with $s3.roleSessionName }}
SNAPSHOT_AWS_ROLE_SESSION_NAME: {{ . | quote }}
{{- end }}
{{- with $s3.endpoint }}
SNAPSHOT_AWS_ENDPOINT: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $s3.forcePathStyle) }}
SNAPSHOT_AWS_FORCE_PATH_STYLE: {{ $s3.forcePathStyle | toString | quote }}
{{- end }}
{{- with $s3.sse }}
SNAPSHOT_AWS_SSE: {{ . | quote }}
{{- end }}
{{- with $s3.sseKmsKeyId }}
SNAPSHOT_AWS_SSE_KMS_KEY_ID: {{ . | quote }}
{{- end }}
{{- with $s3.storageClass }}
SNAPSHOT_AWS_STORAGE_CLASS: {{ . | quote }}
{{- end }}
{{- $lock := $s3.objectLock | default dict }}
{{- if ne (empty $lock.mode) (kindIs "invalid" $lock.days) }}
{{- fail "cloud.s3.objectLock: set mode and days together (or neither)" }}
{{- end }}
{{- with $lock.mode }}
SNAPSHOT_AWS_OBJECT_LOCK_MODE: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $lock.days) }}
SNAPSHOT_AWS_OBJECT_LOCK_DAYS: {{ $lock.days | int | toString | quote }}
{{- end }}
{{- with $az.storageAccount }}
SNAPSHOT_AZBLOB_STORAGE_ACCOUNT: {{ . | quote }}
{{- end }}
{{- with $az.container }}
SNAPSHOT_AZBLOB_CONTAINER: {{ . | quote }}
{{- end }}
{{- with $az.endpoint }}
SNAPSHOT_AZBLOB_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with $az.accessTier }}
SNAPSHOT_AZBLOB_ACCESS_TIER: {{ . | quote }}
{{- end }}
{{- with $gcs.bucket }}
SNAPSHOT_GCS_BUCKET: {{ . | quote }}
{{- end }}
{{- with $gcs.project }}
SNAPSHOT_GCS_PROJECT: {{ . | quote }}
{{- end }}
{{- with $gcs.endpoint }}
SNAPSHOT_GCS_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with $cloud.file.dir }}
SNAPSHOT_FILE_DIR: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Inline keys and secrets for <release>-cloud-secret, unencoded.
*/}}
{{- define "snapshot-job.cloudSecretData" -}}
{{- $cloud := include "snapshot-job.cloud" . | fromYaml }}
{{- with $cloud.s3.accessKey }}
SNAPSHOT_AWS_ACCESS_KEY: {{ . | quote }}
{{- end }}
{{- with $cloud.s3.secretKey }}
SNAPSHOT_AWS_SECRET_KEY: {{ . | quote }}
{{- end }}
{{- with $cloud.azblob.storageKey }}
SNAPSHOT_AZBLOB_STORAGE_KEY: {{ . | quote }}
{{- end }}
{{- with ($cloud.gcs | default dict).credentialsJson }}
SNAPSHOT_GCS_CREDENTIALS_JSON: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
envFrom: referenced ConfigMaps, referenced Secrets, then the generated ones,
so that for the same key inline values win over referenced ones (the kubelet
lets a later envFrom source override an earlier one).
*/}}
{{- define "snapshot-job.envFrom" -}}
{{- $cloud := include "snapshot-job.cloud" . | fromYaml }}
{{- range $cloud.configMaps }}
- configMapRef:
    name: {{ . | quote }}
{{- end }}
{{- range $cloud.secrets }}
- secretRef:
    name: {{ . | quote }}
{{- end }}
{{- if include "snapshot-job.cloudConfigData" . | trim }}
- configMapRef:
    name: {{ include "snapshot-job.fullname" . }}-cloud-config
{{- end }}
{{- if include "snapshot-job.cloudSecretData" . | trim }}
- secretRef:
    name: {{ include "snapshot-job.fullname" . }}-cloud-secret
{{- end }}
{{- end }}

{{/*
env entry helper: renders name/value only when the value is set, because an
env entry beats every envFrom source and would make the ConfigMaps unable to
set the variable; and not when extraEnv sets the same name (extraEnv wins, and
a duplicate name draws an API warning). Call with (list NAME VALUE EXTRA_NAMES).
*/}}
{{- define "snapshot-job.envIfSet" -}}
{{- $name := index . 0 }}
{{- $value := index . 1 }}
{{- $extra := index . 2 }}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "") (eq (toString $value) "0") (has $name $extra)) }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
The container environment. Call with (dict "root" $ "verb" "backup"|"restore" "hook" bool
"cronjob" NAME), cronjob only for the CronJobs' pods.
*/}}
{{- define "snapshot-job.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $cloud := include "snapshot-job.cloud" $root | fromYaml }}
{{- $x := list }}
{{- range $v.extraEnv }}{{ $x = append $x .name }}{{ end }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_CLOUD_PROVIDER" $cloud.provider $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_CLOUD_PREFIX" $cloud.prefix $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_NAME" $v.snapshots.name $x) }}
{{- /* The chart owns these paths: the volume and the termination file are mounted there. */}}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_SOURCE_DIR" $v.snapshots.mountPath $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_TERMINATION_LOG" "/dev/termination-log" $x) }}
{{- include "snapshot-job.envIfSet" (list "TMPDIR" "/tmp" $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_LOG_FORMAT" $v.log.format $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_LOG_LEVEL" $v.log.level $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_UPLOAD_CONCURRENCY" $v.transfer.concurrency $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_PART_SIZE" $v.transfer.partSize $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_IO_TIMEOUT" $v.transfer.ioTimeout $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_METRICS_PUSHGATEWAY_URL" $v.metrics.pushgateway.url $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_METRICS_JOB" $v.metrics.job $x) }}
{{- /* The metrics' grouping labels: there is no downward API for a pod's
       owner, so the CronJob's name is rendered in; a Job created with
       kubectl create job --from=cronjob/... keeps it, and its run counts
       for that CronJob. */}}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_METRICS_CRONJOB" .cronjob $x) }}
{{- if not (has "POD_NAMESPACE" $x) }}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}
{{- if eq .verb "backup" }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_COMPRESSION_LEVEL" $v.backup.compressionLevel $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RETENTION_KEEP_LAST" $v.retention.keepLast $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RETENTION_KEEP_DAILY" $v.retention.keepDaily $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RETENTION_KEEP_WEEKLY" $v.retention.keepWeekly $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RETENTION_KEEP_MONTHLY" $v.retention.keepMonthly $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RETENTION_MAX_AGE" $v.retention.maxAge $x) }}
{{- if and $v.retention.dryRun (not (has "SNAPSHOT_RETENTION_DRY_RUN" $x)) }}
- name: SNAPSHOT_RETENTION_DRY_RUN
  value: "true"
{{- end }}
{{- /* Public keys only: the backup never gets the private key. */}}
{{- with $v.encryption }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_ENCRYPTION_RECIPIENTS" (join "," (.recipients | default list)) $x) }}
{{- end }}
{{- else }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RESTORE_KEY" $v.restore.key $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RESTORE_PATHS" (join "," ($v.restore.paths | default list)) $x) }}
{{- if and $v.encryption $v.encryption.identitySecret (not (has "SNAPSHOT_ENCRYPTION_IDENTITY" $x)) }}
- name: SNAPSHOT_ENCRYPTION_IDENTITY
  valueFrom:
    secretKeyRef:
      name: {{ $v.encryption.identitySecret | quote }}
      key: {{ $v.encryption.identitySecretKey | default "identity" | quote }}
{{- end }}
{{- if .hook }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RESTORE_IF_MISSING" $v.restore.onInstall.ifMissing $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RESTORE_IF_NOT_EMPTY" $v.restore.onInstall.ifNotEmpty $x) }}
{{- else }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RESTORE_IF_MISSING" $v.restore.ifMissing $x) }}
{{- include "snapshot-job.envIfSet" (list "SNAPSHOT_RESTORE_IF_NOT_EMPTY" $v.restore.ifNotEmpty $x) }}
{{- end }}
{{- end }}
{{- if and $v.resources $v.resources.limits $v.resources.limits.memory (not (has "GOMEMLIMIT" $x)) }}
{{- /* Bytes (divisor 1), which GOMEMLIMIT reads as a plain number. */}}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      containerName: snapshot-job
      resource: limits.memory
      divisor: "1"
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
podFailurePolicy shared by every Job: exit codes the contract marks as not
worth retrying fail the Job at once (6 above all: the backup is stored, and a
retry would store another one); pod disruptions (eviction, preemption, node
drain) are retried without counting against backoffLimit.
*/}}
{{- define "snapshot-job.podFailurePolicy" -}}
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: snapshot-job
        operator: In
        values: [2, 3, 4, 6, 7, 8]
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
{{- end }}

{{/*
The Job spec (without apiVersion/kind/metadata). Call with
(dict "root" $ "verb" "backup"|"restore" "hook" bool "component" NAME "job" <backup or restore values>
"cronjob" NAME), cronjob only for the CronJobs.
*/}}
{{- define "snapshot-job.jobSpec" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $cloud := include "snapshot-job.cloud" $root | fromYaml }}
backoffLimit: {{ .job.backoffLimit | int64 }}
{{- if not (kindIs "invalid" .job.activeDeadlineSeconds) }}
activeDeadlineSeconds: {{ .job.activeDeadlineSeconds | int64 }}
{{- end }}
{{- if not (kindIs "invalid" .job.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ .job.ttlSecondsAfterFinished | int64 }}
{{- end }}
{{ include "snapshot-job.podFailurePolicy" $root }}
template:
  metadata:
    labels:
      {{- include "snapshot-job.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
      {{- if $cloud.azblob.workloadIdentity }}
      azure.workload.identity/use: "true"
      {{- end }}
      {{- with $v.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "snapshot-job.serviceAccountName" $root }}
    automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
    {{- /* Service links would add <SERVICE>_PORT variables; a Service named
           "snapshot" would even add SNAPSHOT_* ones the job warns about. */}}
    enableServiceLinks: false
    terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds | int64 }}
    {{- with $v.podSecurityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.priorityClassName }}
    priorityClassName: {{ . }}
    {{- end }}
    {{- with $v.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: snapshot-job
        image: {{ include "snapshot-job.image" $root }}
        imagePullPolicy: {{ $v.image.pullPolicy }}
        args: [{{ .verb | quote }}]
        {{- with include "snapshot-job.envFrom" $root | trim }}
        envFrom:
          {{- . | nindent 10 }}
        {{- end }}
        env:
          {{- include "snapshot-job.env" . | trim | nindent 10 }}
        {{- with $v.securityContext }}
        securityContext:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $v.resources }}
        resources:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: FallbackToLogsOnError
        volumeMounts:
          - name: snapshots
            mountPath: {{ $v.snapshots.mountPath }}
            {{- with $v.snapshots.subPath }}
            subPath: {{ . }}
            {{- end }}
            {{- if and (eq .verb "backup") $v.backup.readOnlyVolume }}
            readOnly: true
            {{- end }}
          - name: tmp
            mountPath: /tmp
          {{- with $v.extraVolumeMounts }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
    volumes:
      - name: snapshots
        persistentVolumeClaim:
          claimName: {{ include "snapshot-job.claimName" $root }}
      - name: tmp
        {{- if or $v.tmp.medium $v.tmp.sizeLimit }}
        emptyDir:
          {{- with $v.tmp.medium }}
          medium: {{ . }}
          {{- end }}
          {{- with $v.tmp.sizeLimit }}
          sizeLimit: {{ . | quote }}
          {{- end }}
        {{- else }}
        emptyDir: {}
        {{- end }}
      {{- with $v.extraVolumes }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
{{- end }}
