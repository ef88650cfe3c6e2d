package chart

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/test/chart/podcontract"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const containerName = "snapshot-job"

// valueSets are the values files every generic check runs against.
var valueSets = map[string]string{
	"default": ``,
	"s3": `
cloud:
  provider: s3
  prefix: snapshots/
  s3:
    bucket: my-bucket
    region: eu-west-1
    accessKey: AKIAEXAMPLEACCESS
    secretKey: wJalrEXAMPLESECRETKEY
    roleArn: arn:aws:iam::123456789012:role/snap
    externalId: ext-1234
    roleSessionName: snap-session
    endpoint: https://s3.example.com
    forcePathStyle: true
    sse: aws:kms
    sseKmsKeyId: alias/snap
    storageClass: STANDARD_IA
    objectLock: {mode: GOVERNANCE, days: 30}
`,
	"azblob": `
cloud:
  provider: azblob
  prefix: kubeshark
  azblob:
    storageAccount: snapacct
    container: snaps
    storageKey: c3RvcmFnZS1rZXktRVhBTVBMRQ==
    endpoint: https://snapacct.blob.core.usgovcloudapi.net
    accessTier: Cool
`,
	"encryption": `
cloud: {provider: s3, s3: {bucket: b}}
encryption:
  recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
  identitySecret: snapshot-age-key
`,
	"inline-only": `
cloud:
  provider: s3
  s3: {bucket: only-inline, accessKey: AKIAONLY, secretKey: only-secret}
`,
	"metrics": `
cloud:
  provider: s3
  s3: {bucket: snaps}
metrics:
  pushgateway: {url: "http://prometheus-pushgateway.monitoring:9091"}
  job: kubeshark-backups
`,
	"references-only": `
cloud:
  provider: s3
  configMaps: [kubeshark-s3-config, extra-config]
  secrets: [kubeshark-s3-creds]
`,
	"mixed": `
cloud:
  configMaps: [kubeshark-s3-config]
  secrets: [kubeshark-s3-creds]
  s3: {bucket: inline-bucket, secretKey: inline-secret}
`,
	"irsa": `
cloud:
  provider: s3
  s3: {bucket: irsa-bucket, region: us-east-1}
serviceAccount:
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/snapshots
`,
	"workload-identity": `
cloud:
  provider: azblob
  azblob: {storageAccount: snapacct, container: snaps, workloadIdentity: true}
serviceAccount:
  annotations:
    azure.workload.identity/client-id: 00000000-0000-0000-0000-000000000001
`,
	"restore-on-install-off": `
cloud: {provider: s3, s3: {bucket: b}}
restore: {onInstall: {enabled: false}}
`,
	"existing-claim": `
cloud: {provider: s3, s3: {bucket: b}}
snapshots: {existingClaim: kubeshark-snapshots, mountPath: /data, subPath: snaps}
`,
	"new-pvc": `
cloud: {provider: s3, s3: {bucket: b}}
snapshots:
  persistence: {size: 100Gi, storageClassName: gp3, accessModes: [ReadWriteOncePod], keep: false}
`,
	"everything": `
cloud: {provider: file, file: {dir: /nfs/snapshots}}
snapshots: {name: kubeshark}
backup:
  schedule: "0 */6 * * *"
  timeZone: Europe/Berlin
  suspend: true
  concurrencyPolicy: Replace
  startingDeadlineSeconds: null
  successfulJobsHistoryLimit: 1
  failedJobsHistoryLimit: 5
  backoffLimit: 4
  activeDeadlineSeconds: 21600
  ttlSecondsAfterFinished: 3600
  compressionLevel: better
  readOnlyVolume: false
retention: {keepLast: 7, keepDaily: 14, keepWeekly: 8, keepMonthly: 12, maxAge: 90d, dryRun: true}
restore: {key: snapshots/kubeshark-20261126T031500Z.tar.zst, ifMissing: fail, ifNotEmpty: overwrite, paths: [node-1, "*/pcapdump/*.pcap"]}
transfer: {concurrency: 8, partSize: 64MiB, ioTimeout: 5m}
log: {format: text, level: debug}
image: {repository: registry.example.com/snapshot-job, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
podLabels: {team: observability}
podAnnotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: "false"}
tmp: {sizeLimit: 2Gi, medium: Memory}
resources:
  requests: {cpu: 500m, memory: 256Mi}
  limits: {memory: 1Gi}
priorityClassName: batch-low
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: batch, effect: NoSchedule}]
affinity:
  podAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app.kubeshark.co/app: hub}}
        topologyKey: kubernetes.io/hostname
extraEnv:
  - {name: SNAPSHOT_LOG_LEVEL, value: warn}
  - name: POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
extraVolumes: [{name: nfs, nfs: {server: nfs.example.com, path: /exports}}]
extraVolumeMounts: [{name: nfs, mountPath: /nfs}]
`,
}

// podTemplates returns the pod templates of the backup CronJob, the restore
// CronJob and (when rendered) the post-install hook Job.
func podTemplates(t *testing.T, r *Rendered) map[string]corev1.PodTemplateSpec {
	t.Helper()
	out := map[string]corev1.PodTemplateSpec{}
	for short, name := range map[string]string{"backup": fullname + "-backup", "restore": fullname + "-restore"} {
		cj, ok := r.CronJobs[name]
		if !ok {
			t.Fatalf("CronJob %s not rendered", name)
		}
		out[short] = cj.Spec.JobTemplate.Spec.Template
	}
	if j, ok := r.Jobs[fullname+"-restore-on-install"]; ok {
		out["hook"] = j.Spec.Template
	}
	return out
}

func jobSpecs(r *Rendered) map[string]batchv1.JobSpec {
	out := map[string]batchv1.JobSpec{}
	for name, cj := range r.CronJobs {
		out[name] = cj.Spec.JobTemplate.Spec
	}
	for name, j := range r.Jobs {
		out[name] = j.Spec
	}
	return out
}

func theContainer(t *testing.T, pt corev1.PodTemplateSpec) *corev1.Container {
	t.Helper()
	if len(pt.Spec.Containers) != 1 || pt.Spec.Containers[0].Name != containerName {
		t.Fatalf("want exactly one container %q, got %d", containerName, len(pt.Spec.Containers))
	}
	return &pt.Spec.Containers[0]
}

func envOf(c *corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

func envValue(t *testing.T, c *corev1.Container, name string) (string, bool) {
	t.Helper()
	e, ok := envOf(c)[name]
	if ok && e.ValueFrom != nil {
		t.Fatalf("env %s comes from valueFrom, want a value", name)
	}
	return e.Value, ok
}

func envFromList(c *corev1.Container) []string {
	var out []string
	for _, f := range c.EnvFrom {
		switch {
		case f.ConfigMapRef != nil:
			out = append(out, "configMap:"+f.ConfigMapRef.Name)
		case f.SecretRef != nil:
			out = append(out, "secret:"+f.SecretRef.Name)
		}
	}
	return out
}

// TestEveryValueSetRendersStrictly decodes every object of every value set
// strictly and checks what must hold whatever the values.
func TestEveryValueSetRendersStrictly(t *testing.T) {
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			r := render(t, values)
			for short, pt := range podTemplates(t, r) {
				c := theContainer(t, pt)
				spec := pt.Spec
				verb := map[string]string{"backup": "backup", "restore": "restore", "hook": "restore"}[short]
				if !slices.Equal(c.Args, []string{verb}) || len(c.Command) != 0 {
					t.Errorf("%s: command %q args %q, want the image entrypoint with args [%s]", short, c.Command, c.Args, verb)
				}
				if spec.RestartPolicy != corev1.RestartPolicyNever {
					t.Errorf("%s: restartPolicy %q, want Never", short, spec.RestartPolicy)
				}
				if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
					t.Errorf("%s: enableServiceLinks must be false", short)
				}
				if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
					t.Errorf("%s: automountServiceAccountToken must be false", short)
				}
				if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != 60 {
					t.Errorf("%s: terminationGracePeriodSeconds %v, want 60", short, spec.TerminationGracePeriodSeconds)
				}
				if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError || c.TerminationMessagePath != "/dev/termination-log" {
					t.Errorf("%s: termination message %q %q", short, c.TerminationMessagePath, c.TerminationMessagePolicy)
				}
				if v, _ := envValue(t, c, "SNAPSHOT_TERMINATION_LOG"); v != c.TerminationMessagePath {
					t.Errorf("%s: SNAPSHOT_TERMINATION_LOG %q, want the terminationMessagePath", short, v)
				}
				seen := map[string]bool{}
				for _, e := range c.Env {
					if seen[e.Name] {
						t.Errorf("%s: env %s appears twice (the API server warns; the later one hides the first)", short, e.Name)
					}
					seen[e.Name] = true
				}
				checkSecurity(t, short, spec, c)
				checkTmp(t, short, spec, c)
				// The kubelet must be able to build the environment from the
				// rendered objects plus the referenced ones.
				if _, err := podcontract.Environment(harnessInput(r, pt), c); err != nil {
					t.Errorf("%s: environment: %v", short, err)
				}
			}
			for name, js := range jobSpecs(r) {
				checkPodFailurePolicy(t, name, js)
			}
			if restore := r.CronJobs[fullname+"-restore"]; restore.Spec.Suspend == nil || !*restore.Spec.Suspend {
				t.Errorf("restore CronJob must be suspended")
			} else if restore.Spec.Schedule != "0 0 31 2 *" {
				t.Errorf("restore CronJob schedule %q must never fire", restore.Spec.Schedule)
			}
			for name := range r.CronJobs {
				if len(name) > 52 {
					t.Errorf("CronJob name %q is longer than 52 characters", name)
				}
			}
		})
	}
}

func checkSecurity(t *testing.T, where string, spec corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	ps := spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != 65532 ||
		ps.RunAsGroup == nil || *ps.RunAsGroup != 65532 || ps.FSGroup == nil || *ps.FSGroup != 65532 ||
		ps.FSGroupChangePolicy == nil || *ps.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod securityContext %+v is not the restricted one", where, ps)
	}
	cs := c.SecurityContext
	if cs == nil || cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
		cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
		cs.RunAsNonRoot == nil || !*cs.RunAsNonRoot ||
		cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(cs.Capabilities.Add) != 0 ||
		cs.Privileged != nil && *cs.Privileged {
		t.Errorf("%s: container securityContext %+v is not the restricted one", where, cs)
	}
}

func checkTmp(t *testing.T, where string, spec corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	var mounted bool
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/tmp" && m.Name == "tmp" && !m.ReadOnly {
			mounted = true
		}
	}
	var emptyDir bool
	for _, v := range spec.Volumes {
		if v.Name == "tmp" && v.EmptyDir != nil {
			emptyDir = true
		}
	}
	if !mounted || !emptyDir {
		t.Errorf("%s: want a writable emptyDir at /tmp (mounted %v, emptyDir %v)", where, mounted, emptyDir)
	}
	if v, _ := envValue(t, c, "TMPDIR"); v != "/tmp" {
		t.Errorf("%s: TMPDIR = %q", where, v)
	}
}

func checkPodFailurePolicy(t *testing.T, where string, js batchv1.JobSpec) {
	t.Helper()
	p := js.PodFailurePolicy
	if p == nil || len(p.Rules) != 2 {
		t.Fatalf("%s: podFailurePolicy %+v, want two rules", where, p)
	}
	fail, ignore := p.Rules[0], p.Rules[1]
	if fail.Action != batchv1.PodFailurePolicyActionFailJob || fail.OnExitCodes == nil ||
		fail.OnExitCodes.ContainerName == nil || *fail.OnExitCodes.ContainerName != containerName ||
		fail.OnExitCodes.Operator != batchv1.PodFailurePolicyOnExitCodesOpIn ||
		!slices.Equal(fail.OnExitCodes.Values, []int32{2, 3, 4, 6, 7, 8}) {
		t.Errorf("%s: first rule %+v, want FailJob on exit codes 2,3,4,6,7,8 of %s", where, fail, containerName)
	}
	if ignore.Action != batchv1.PodFailurePolicyActionIgnore || len(ignore.OnPodConditions) != 1 ||
		ignore.OnPodConditions[0].Type != corev1.DisruptionTarget || ignore.OnPodConditions[0].Status != corev1.ConditionTrue {
		t.Errorf("%s: second rule %+v, want Ignore on DisruptionTarget", where, ignore)
	}
	if js.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: podFailurePolicy needs restartPolicy Never", where)
	}
}

func TestDefaults(t *testing.T) {
	r := render(t, valueSets["default"])
	if r.Count != 5 || len(r.ConfigMaps) != 0 || len(r.Secrets) != 0 {
		t.Errorf("rendered %d objects (%d ConfigMaps, %d Secrets), want 5: no generated ConfigMap or Secret without inline values",
			r.Count, len(r.ConfigMaps), len(r.Secrets))
	}
	sa, ok := r.ServiceAccounts[fullname]
	if !ok || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s with automountServiceAccountToken false: got %+v", fullname, sa)
	}
	pvc, ok := r.PVCs[fullname+"-snapshots"]
	if !ok {
		t.Fatalf("PVC %s-snapshots not rendered", fullname)
	}
	if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("new PVC must be kept on uninstall by default")
	}
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Errorf("PVC size %s, want 10Gi", q.String())
	}

	backup := r.CronJobs[fullname+"-backup"]
	if backup.Spec.Schedule != "15 3 * * *" || backup.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent ||
		backup.Spec.Suspend == nil || *backup.Spec.Suspend || backup.Spec.TimeZone != nil ||
		backup.Spec.StartingDeadlineSeconds == nil || *backup.Spec.StartingDeadlineSeconds != 600 ||
		*backup.Spec.SuccessfulJobsHistoryLimit != 3 || *backup.Spec.FailedJobsHistoryLimit != 3 {
		t.Errorf("backup CronJob spec %+v", backup.Spec)
	}
	js := backup.Spec.JobTemplate.Spec
	// A hung backup is stopped after 6 h; the next scheduled run is not
	// skipped for a whole day because of it.
	if *js.BackoffLimit != 2 || js.ActiveDeadlineSeconds == nil || *js.ActiveDeadlineSeconds != 21600 || js.TTLSecondsAfterFinished != nil {
		t.Errorf("backup Job knobs: backoffLimit %d, activeDeadlineSeconds %v, ttl %v", *js.BackoffLimit, js.ActiveDeadlineSeconds, js.TTLSecondsAfterFinished)
	}

	pts := podTemplates(t, r)
	for short, pt := range pts {
		c := theContainer(t, pt)
		if len(c.EnvFrom) != 0 {
			t.Errorf("%s: envFrom %v, want none", short, envFromList(c))
		}
		// Nothing set in values: no env entry may mask a ConfigMap.
		for _, name := range []string{"SNAPSHOT_CLOUD_PROVIDER", "SNAPSHOT_CLOUD_PREFIX", "SNAPSHOT_NAME", "SNAPSHOT_LOG_LEVEL",
			"SNAPSHOT_LOG_FORMAT", "SNAPSHOT_UPLOAD_CONCURRENCY", "SNAPSHOT_PART_SIZE", "SNAPSHOT_IO_TIMEOUT", "SNAPSHOT_COMPRESSION_LEVEL",
			"SNAPSHOT_RESTORE_KEY", "SNAPSHOT_RETENTION_KEEP_LAST", "SNAPSHOT_RETENTION_MAX_AGE", "SNAPSHOT_RETENTION_DRY_RUN", "GOMEMLIMIT"} {
			if _, ok := envOf(c)[name]; ok {
				t.Errorf("%s: env %s rendered although not set in values", short, name)
			}
		}
		if v, _ := envValue(t, c, "SNAPSHOT_SOURCE_DIR"); v != "/snapshots" {
			t.Errorf("%s: SNAPSHOT_SOURCE_DIR = %q", short, v)
		}
		if c.Image != "ghcr.io/snapshot-job/snapshot-job:0.1.0" || c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: image %s %s", short, c.Image, c.ImagePullPolicy)
		}
		if pt.Spec.ServiceAccountName != fullname {
			t.Errorf("%s: serviceAccountName %q", short, pt.Spec.ServiceAccountName)
		}
		if _, ok := pt.Labels["azure.workload.identity/use"]; ok {
			t.Errorf("%s: workload identity label without workloadIdentity", short)
		}
		if claim := pt.Spec.Volumes[0].PersistentVolumeClaim; claim == nil || claim.ClaimName != fullname+"-snapshots" {
			t.Errorf("%s: snapshots volume %+v", short, pt.Spec.Volumes[0])
		}
		// A backup only reads the volume; restores write it.
		wantRO := short == "backup"
		if m := c.VolumeMounts[0]; m.Name != "snapshots" || m.MountPath != "/snapshots" || m.ReadOnly != wantRO {
			t.Errorf("%s: snapshots mount %+v, want readOnly %v", short, m, wantRO)
		}
	}

	// Restore policies: the hook tolerates an empty bucket and a volume with
	// data; a manual restore keeps the binary's safe defaults (fail).
	hook := theContainer(t, pts["hook"])
	for _, c := range []*corev1.Container{hook, theContainer(t, pts["restore"])} {
		if _, ok := envOf(c)["SNAPSHOT_RESTORE_PATHS"]; ok {
			t.Errorf("restore.paths [] sets SNAPSHOT_RESTORE_PATHS; want it unset (everything)")
		}
	}
	for name, want := range map[string]string{"SNAPSHOT_RESTORE_IF_MISSING": "ok", "SNAPSHOT_RESTORE_IF_NOT_EMPTY": "skip"} {
		if v, _ := envValue(t, hook, name); v != want {
			t.Errorf("hook %s = %q, want %q", name, v, want)
		}
		if _, ok := envOf(theContainer(t, pts["restore"]))[name]; ok {
			t.Errorf("manual restore sets %s; want the binary's default (fail)", name)
		}
	}

	job := r.Jobs[fullname+"-restore-on-install"]
	for k, want := range map[string]string{
		"helm.sh/hook":               "post-install",
		"helm.sh/hook-weight":        "0",
		"helm.sh/hook-delete-policy": "before-hook-creation",
	} {
		if job.Annotations[k] != want {
			t.Errorf("hook annotation %s = %q, want %q", k, job.Annotations[k], want)
		}
	}
	if job.Spec.TTLSecondsAfterFinished == nil || *job.Spec.TTLSecondsAfterFinished != 86400 {
		t.Errorf("hook Job ttlSecondsAfterFinished %v, want 86400", job.Spec.TTLSecondsAfterFinished)
	}
	if job.Spec.ActiveDeadlineSeconds == nil || *job.Spec.ActiveDeadlineSeconds != 21600 {
		t.Errorf("hook Job activeDeadlineSeconds %v, want 21600", job.Spec.ActiveDeadlineSeconds)
	}
	if d := r.CronJobs[fullname+"-restore"].Spec.JobTemplate.Spec.ActiveDeadlineSeconds; d != nil {
		t.Errorf("manual restore activeDeadlineSeconds %d, want none", *d)
	}

	for _, want := range []string{
		"kubectl -n monitoring create job --from=cronjob/snap-snapshot-job-backup ",
		"kubectl -n monitoring create job --from=cronjob/snap-snapshot-job-restore ",
		"kubectl -n monitoring logs job/snap-snapshot-job-restore-on-install",
		"state.terminated.message",
		"WARNING: cloud.provider is empty",
		// Ends on Failed as well as on Complete.
		"kubectl -n monitoring wait --for=jsonpath='{.status.conditions[-1:].status}'=True job/JOB --timeout=24h",
		"Codes 2, 3, 4, 6, 7 and 8 fail",
		"stopped after 21600 s (backup.activeDeadlineSeconds)",
	} {
		if !strings.Contains(r.Notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, r.Notes)
		}
	}
}

func TestS3Inline(t *testing.T) {
	r := render(t, valueSets["s3"])
	cm := r.ConfigMaps[fullname+"-cloud-config"]
	if cm == nil {
		t.Fatal("ConfigMap snap-snapshot-job-cloud-config not rendered")
	}
	wantConfig := map[string]string{
		"SNAPSHOT_AWS_BUCKET":            "my-bucket",
		"SNAPSHOT_AWS_REGION":            "eu-west-1",
		"SNAPSHOT_AWS_ROLE_ARN":          "arn:aws:iam::123456789012:role/snap",
		"SNAPSHOT_AWS_EXTERNAL_ID":       "ext-1234",
		"SNAPSHOT_AWS_ROLE_SESSION_NAME": "snap-session",
		"SNAPSHOT_AWS_ENDPOINT":          "https://s3.example.com",
		"SNAPSHOT_AWS_FORCE_PATH_STYLE":  "true",
		"SNAPSHOT_AWS_SSE":               "aws:kms",
		"SNAPSHOT_AWS_SSE_KMS_KEY_ID":    "alias/snap",
		"SNAPSHOT_AWS_STORAGE_CLASS":     "STANDARD_IA",
		"SNAPSHOT_AWS_OBJECT_LOCK_MODE":  "GOVERNANCE",
		"SNAPSHOT_AWS_OBJECT_LOCK_DAYS":  "30",
	}
	if !maps.Equal(cm.Data, wantConfig) {
		t.Errorf("ConfigMap data\n got %v\nwant %v", cm.Data, wantConfig)
	}
	checkSecret(t, r, map[string]string{"SNAPSHOT_AWS_ACCESS_KEY": "AKIAEXAMPLEACCESS", "SNAPSHOT_AWS_SECRET_KEY": "wJalrEXAMPLESECRETKEY"})
	checkSecretsOnlyInSecret(t, valueSets["s3"], "AKIAEXAMPLEACCESS", "wJalrEXAMPLESECRETKEY")
	for short, pt := range podTemplates(t, r) {
		c := theContainer(t, pt)
		if got, want := envFromList(c), []string{"configMap:snap-snapshot-job-cloud-config", "secret:snap-snapshot-job-cloud-secret"}; !slices.Equal(got, want) {
			t.Errorf("%s: envFrom %v, want %v", short, got, want)
		}
		if v, _ := envValue(t, c, "SNAPSHOT_CLOUD_PROVIDER"); v != "s3" {
			t.Errorf("%s: SNAPSHOT_CLOUD_PROVIDER = %q", short, v)
		}
		if v, _ := envValue(t, c, "SNAPSHOT_CLOUD_PREFIX"); v != "snapshots/" {
			t.Errorf("%s: SNAPSHOT_CLOUD_PREFIX = %q", short, v)
		}
	}

	// Object Lock: both or neither.
	for _, half := range []string{"{mode: GOVERNANCE}", "{days: 7}"} {
		if _, err := renderErr(t, "cloud: {provider: s3, s3: {bucket: b, objectLock: "+half+"}}"); err == nil || !strings.Contains(err.Error(), "set mode and days together") {
			t.Errorf("objectLock %s: %v, want the chart to refuse it", half, err)
		}
	}

	// false is a value too; null (the default) leaves the key out.
	r = render(t, "cloud: {provider: s3, s3: {bucket: b, forcePathStyle: false}}")
	if v, ok := r.ConfigMaps[fullname+"-cloud-config"].Data["SNAPSHOT_AWS_FORCE_PATH_STYLE"]; !ok || v != "false" {
		t.Errorf("forcePathStyle false: got %q, %v", v, ok)
	}
	r = render(t, "cloud: {provider: s3, s3: {bucket: b}}")
	if _, ok := r.ConfigMaps[fullname+"-cloud-config"].Data["SNAPSHOT_AWS_FORCE_PATH_STYLE"]; ok {
		t.Errorf("forcePathStyle null must not render the key")
	}
	if len(r.Secrets) != 0 {
		t.Errorf("no inline keys: want no Secret, got %v", slices.Collect(maps.Keys(r.Secrets)))
	}
}

func TestAzblobInline(t *testing.T) {
	r := render(t, valueSets["azblob"])
	want := map[string]string{
		"SNAPSHOT_AZBLOB_STORAGE_ACCOUNT": "snapacct",
		"SNAPSHOT_AZBLOB_CONTAINER":       "snaps",
		"SNAPSHOT_AZBLOB_ENDPOINT":        "https://snapacct.blob.core.usgovcloudapi.net",
		"SNAPSHOT_AZBLOB_ACCESS_TIER":     "Cool",
	}
	if got := r.ConfigMaps[fullname+"-cloud-config"].Data; !maps.Equal(got, want) {
		t.Errorf("ConfigMap data\n got %v\nwant %v", got, want)
	}
	checkSecret(t, r, map[string]string{"SNAPSHOT_AZBLOB_STORAGE_KEY": "c3RvcmFnZS1rZXktRVhBTVBMRQ=="})
	checkSecretsOnlyInSecret(t, valueSets["azblob"], "c3RvcmFnZS1rZXktRVhBTVBMRQ==")
}

// checkSecret: the generated Secret holds exactly these keys and values.
func checkSecret(t *testing.T, r *Rendered, want map[string]string) {
	t.Helper()
	s := r.Secrets[fullname+"-cloud-secret"]
	if s == nil {
		t.Fatal("Secret snap-snapshot-job-cloud-secret not rendered")
	}
	if s.Type != corev1.SecretTypeOpaque || len(s.StringData) != 0 {
		t.Errorf("Secret type %q stringData %v, want Opaque with data only", s.Type, s.StringData)
	}
	got := map[string]string{}
	for k, v := range s.Data {
		got[k] = string(v)
	}
	if !maps.Equal(got, want) {
		t.Errorf("Secret data\n got %v\nwant %v", got, want)
	}
}

// checkSecretsOnlyInSecret: a secret value appears nowhere in the rendered
// output, neither in clear nor base64-encoded, except in the Secret's data.
func checkSecretsOnlyInSecret(t *testing.T, values string, secrets ...string) {
	t.Helper()
	files, err := renderErr(t, values)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		for _, s := range secrets {
			enc := base64.StdEncoding.EncodeToString([]byte(s))
			if strings.Contains(text, s) {
				t.Errorf("%s contains the secret %q in clear", name, s)
			}
			if strings.Contains(text, enc) && !strings.HasSuffix(name, "cloud-config.yaml") {
				t.Errorf("%s contains the secret %q encoded", name, s)
			}
		}
	}
}

func TestReferencesOnly(t *testing.T) {
	r := render(t, valueSets["references-only"])
	if len(r.ConfigMaps) != 0 || len(r.Secrets) != 0 {
		t.Errorf("references only: rendered ConfigMaps %v Secrets %v, want none",
			slices.Collect(maps.Keys(r.ConfigMaps)), slices.Collect(maps.Keys(r.Secrets)))
	}
	for short, pt := range podTemplates(t, r) {
		c := theContainer(t, pt)
		want := []string{"configMap:kubeshark-s3-config", "configMap:extra-config", "secret:kubeshark-s3-creds"}
		if got := envFromList(c); !slices.Equal(got, want) {
			t.Errorf("%s: envFrom %v, want %v", short, got, want)
		}
		for _, f := range c.EnvFrom {
			if f.Prefix != "" || (f.ConfigMapRef != nil && f.ConfigMapRef.Optional != nil) || (f.SecretRef != nil && f.SecretRef.Optional != nil) {
				t.Errorf("%s: envFrom %+v must be a plain, required reference", short, f)
			}
		}
	}
}

// referenced are the upstream-shaped objects the operator created, as the
// references-only and mixed value sets name them.
func referenced() ([]*corev1.ConfigMap, []*corev1.Secret) {
	return []*corev1.ConfigMap{
			{Data: map[string]string{
				"SNAPSHOT_CLOUD_PROVIDER": "s3",
				"SNAPSHOT_CLOUD_PREFIX":   "from-configmap/",
				"SNAPSHOT_AWS_BUCKET":     "configmap-bucket",
				"SNAPSHOT_AWS_REGION":     "eu-central-1",
			}},
			{Data: map[string]string{"SNAPSHOT_LOG_LEVEL": "debug"}},
		}, []*corev1.Secret{
			{Data: map[string][]byte{"SNAPSHOT_AWS_ACCESS_KEY": []byte("AKIAREF"), "SNAPSHOT_AWS_SECRET_KEY": []byte("ref-secret")}},
		}
}

// harnessInput builds podcontract's input from a render plus the
// referenced objects (named kubeshark-s3-config, extra-config and
// kubeshark-s3-creds).
func harnessInput(r *Rendered, pt corev1.PodTemplateSpec) podcontract.Input {
	cms, secrets := referenced()
	in := podcontract.Input{
		Pod:        podcontract.Pod{Meta: pt.ObjectMeta, Spec: pt.Spec},
		Container:  containerName,
		ConfigMaps: maps.Clone(r.ConfigMaps),
		Secrets:    maps.Clone(r.Secrets),
	}
	in.Pod.Meta.Name, in.Pod.Meta.Namespace = "pod-1", namespace
	in.ConfigMaps["kubeshark-s3-config"], in.ConfigMaps["extra-config"] = cms[0], cms[1]
	in.Secrets["kubeshark-s3-creds"] = secrets[0]
	in.Secrets["snapshot-age-key"] = &corev1.Secret{Data: map[string][]byte{"identity": []byte(testIdentity)}}
	return in
}

// TestMixedPrecedence computes the environment as the kubelet would and
// checks who wins: inline values over references, references where the
// values are silent.
func TestMixedPrecedence(t *testing.T) {
	r := render(t, valueSets["mixed"])
	checkSecret(t, r, map[string]string{"SNAPSHOT_AWS_SECRET_KEY": "inline-secret"})
	for short, pt := range podTemplates(t, r) {
		c := theContainer(t, pt)
		want := []string{"configMap:kubeshark-s3-config", "secret:kubeshark-s3-creds", "configMap:snap-snapshot-job-cloud-config", "secret:snap-snapshot-job-cloud-secret"}
		if got := envFromList(c); !slices.Equal(got, want) {
			t.Errorf("%s: envFrom %v, want %v", short, got, want)
		}
		env, err := podcontract.Environment(harnessInput(r, pt), c)
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{
			"SNAPSHOT_CLOUD_PROVIDER": "s3",              // only the ConfigMap sets it
			"SNAPSHOT_CLOUD_PREFIX":   "from-configmap/", // values.prefix empty: no env entry masks it
			"SNAPSHOT_AWS_BUCKET":     "inline-bucket",   // inline beats the reference
			"SNAPSHOT_AWS_REGION":     "eu-central-1",    // inline silent
			"SNAPSHOT_AWS_ACCESS_KEY": "AKIAREF",
			"SNAPSHOT_AWS_SECRET_KEY": "inline-secret",
			"SNAPSHOT_SOURCE_DIR":     "/snapshots",
		} {
			if env[k] != want {
				t.Errorf("%s: %s = %q, want %q", short, k, env[k], want)
			}
		}
	}
}

func TestIRSA(t *testing.T) {
	r := render(t, valueSets["irsa"])
	sa := r.ServiceAccounts[fullname]
	if sa == nil || sa.Annotations["eks.amazonaws.com/role-arn"] != "arn:aws:iam::123456789012:role/snapshots" {
		t.Fatalf("ServiceAccount annotations: %+v", sa)
	}
	if len(r.Secrets) != 0 {
		t.Errorf("IRSA needs no Secret; rendered %v", slices.Collect(maps.Keys(r.Secrets)))
	}
	for short, pt := range podTemplates(t, r) {
		if pt.Spec.ServiceAccountName != sa.Name {
			t.Errorf("%s: runs as %q, want %q", short, pt.Spec.ServiceAccountName, sa.Name)
		}
		if got, want := envFromList(theContainer(t, pt)), []string{"configMap:snap-snapshot-job-cloud-config"}; !slices.Equal(got, want) {
			t.Errorf("%s: envFrom %v, want %v", short, got, want)
		}
	}

	// An existing service account is used, not created.
	r = render(t, "serviceAccount: {create: false, name: kubeshark-sa}")
	if len(r.ServiceAccounts) != 0 {
		t.Errorf("create false rendered a ServiceAccount")
	}
	for short, pt := range podTemplates(t, r) {
		if pt.Spec.ServiceAccountName != "kubeshark-sa" {
			t.Errorf("%s: serviceAccountName %q, want kubeshark-sa", short, pt.Spec.ServiceAccountName)
		}
	}
}

func TestWorkloadIdentity(t *testing.T) {
	r := render(t, valueSets["workload-identity"])
	if r.ServiceAccounts[fullname].Annotations["azure.workload.identity/client-id"] != "00000000-0000-0000-0000-000000000001" {
		t.Errorf("client-id annotation missing")
	}
	pts := podTemplates(t, r)
	if len(pts) != 3 {
		t.Fatalf("want backup, restore and hook pods, got %d", len(pts))
	}
	for short, pt := range pts {
		if pt.Labels["azure.workload.identity/use"] != "true" {
			t.Errorf("%s: pod labels %v lack azure.workload.identity/use: \"true\"", short, pt.Labels)
		}
	}
	if len(r.Secrets) != 0 {
		t.Errorf("workload identity needs no Secret")
	}
}

func TestRestoreOnInstall(t *testing.T) {
	r := render(t, valueSets["restore-on-install-off"])
	if len(r.Jobs) != 0 {
		t.Errorf("onInstall disabled: rendered Jobs %v", slices.Collect(maps.Keys(r.Jobs)))
	}
	if _, ok := r.CronJobs[fullname+"-restore"]; !ok {
		t.Errorf("the manual restore CronJob must stay")
	}
	if strings.Contains(r.Notes, "restore-on-install") {
		t.Errorf("NOTES mention the hook although it is off")
	}

	r = render(t, `
restore:
  key: snapshots/snapshot-20261126T031500Z.tar.zst
  onInstall: {ifMissing: fail, ifNotEmpty: overwrite, hookWeight: -5, hookDeletePolicy: "before-hook-creation,hook-succeeded", ttlSecondsAfterFinished: null}
`)
	job := r.Jobs[fullname+"-restore-on-install"]
	if job.Annotations["helm.sh/hook-weight"] != "-5" || job.Annotations["helm.sh/hook-delete-policy"] != "before-hook-creation,hook-succeeded" {
		t.Errorf("hook annotations %v", job.Annotations)
	}
	if job.Spec.TTLSecondsAfterFinished != nil {
		t.Errorf("ttlSecondsAfterFinished null must leave it unset")
	}
	c := theContainer(t, job.Spec.Template)
	for name, want := range map[string]string{
		"SNAPSHOT_RESTORE_IF_MISSING":   "fail",
		"SNAPSHOT_RESTORE_IF_NOT_EMPTY": "overwrite",
		"SNAPSHOT_RESTORE_KEY":          "snapshots/snapshot-20261126T031500Z.tar.zst",
	} {
		if v, _ := envValue(t, c, name); v != want {
			t.Errorf("hook %s = %q, want %q", name, v, want)
		}
	}
}

func TestExistingClaim(t *testing.T) {
	r := render(t, valueSets["existing-claim"])
	if len(r.PVCs) != 0 {
		t.Errorf("existingClaim: rendered PVCs %v", slices.Collect(maps.Keys(r.PVCs)))
	}
	for short, pt := range podTemplates(t, r) {
		if claim := pt.Spec.Volumes[0].PersistentVolumeClaim; claim == nil || claim.ClaimName != "kubeshark-snapshots" {
			t.Errorf("%s: volume %+v, want claim kubeshark-snapshots", short, pt.Spec.Volumes[0])
		}
		c := theContainer(t, pt)
		if m := c.VolumeMounts[0]; m.MountPath != "/data" || m.SubPath != "snaps" {
			t.Errorf("%s: mount %+v", short, m)
		}
		if v, _ := envValue(t, c, "SNAPSHOT_SOURCE_DIR"); v != "/data" {
			t.Errorf("%s: SNAPSHOT_SOURCE_DIR = %q, want the mount path", short, v)
		}
	}
}

func TestNewPVC(t *testing.T) {
	r := render(t, valueSets["new-pvc"])
	pvc := r.PVCs[fullname+"-snapshots"]
	if pvc == nil {
		t.Fatal("PVC not rendered")
	}
	if _, ok := pvc.Annotations["helm.sh/resource-policy"]; ok {
		t.Errorf("keep: false must not annotate resource-policy")
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "gp3" ||
		!slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}) {
		t.Errorf("PVC spec %+v", pvc.Spec)
	}
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("100Gi")) != 0 {
		t.Errorf("size %s", q.String())
	}
}

func TestGOMEMLIMITFromMemoryLimit(t *testing.T) {
	r := render(t, "resources: {limits: {memory: 512Mi}}")
	for short, pt := range podTemplates(t, r) {
		c := theContainer(t, pt)
		e, ok := envOf(c)["GOMEMLIMIT"]
		if !ok || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil {
			t.Fatalf("%s: GOMEMLIMIT %+v, want a resourceFieldRef", short, e)
		}
		ref := e.ValueFrom.ResourceFieldRef
		if ref.Resource != "limits.memory" || ref.ContainerName != containerName || ref.Divisor.Cmp(resource.MustParse("1")) != 0 {
			t.Errorf("%s: resourceFieldRef %+v", short, ref)
		}
		env, err := podcontract.Environment(podcontract.Input{Pod: podcontract.Pod{Spec: pt.Spec}, Container: containerName}, c)
		if err != nil {
			t.Fatal(err)
		}
		// Bytes, which the Go runtime reads as a plain number.
		if env["GOMEMLIMIT"] != "536870912" {
			t.Errorf("%s: GOMEMLIMIT = %q, want 536870912", short, env["GOMEMLIMIT"])
		}
	}
	// A request alone sets no GOMEMLIMIT: the node's memory is no limit.
	r = render(t, "resources: {requests: {memory: 512Mi}}")
	for short, pt := range podTemplates(t, r) {
		if _, ok := envOf(theContainer(t, pt))["GOMEMLIMIT"]; ok {
			t.Errorf("%s: GOMEMLIMIT without a memory limit", short)
		}
	}
}

func TestEverything(t *testing.T) {
	r := render(t, valueSets["everything"])
	backup := r.CronJobs[fullname+"-backup"]
	s := backup.Spec
	if s.Schedule != "0 */6 * * *" || s.TimeZone == nil || *s.TimeZone != "Europe/Berlin" || !*s.Suspend ||
		s.ConcurrencyPolicy != batchv1.ReplaceConcurrent || s.StartingDeadlineSeconds != nil ||
		*s.SuccessfulJobsHistoryLimit != 1 || *s.FailedJobsHistoryLimit != 5 {
		t.Errorf("backup CronJob spec %+v", s)
	}
	js := s.JobTemplate.Spec
	if *js.BackoffLimit != 4 || *js.ActiveDeadlineSeconds != 21600 || *js.TTLSecondsAfterFinished != 3600 {
		t.Errorf("backup Job knobs %+v", js)
	}
	pts := podTemplates(t, r)
	bc := theContainer(t, pts["backup"])
	if bc.VolumeMounts[0].ReadOnly {
		t.Errorf("readOnlyVolume false must mount the volume writable")
	}
	wantBackup := map[string]string{
		"SNAPSHOT_CLOUD_PROVIDER":         "file",
		"SNAPSHOT_NAME":                   "kubeshark",
		"SNAPSHOT_COMPRESSION_LEVEL":      "better",
		"SNAPSHOT_UPLOAD_CONCURRENCY":     "8",
		"SNAPSHOT_PART_SIZE":              "64MiB",
		"SNAPSHOT_IO_TIMEOUT":             "5m",
		"SNAPSHOT_LOG_FORMAT":             "text",
		"SNAPSHOT_RETENTION_KEEP_LAST":    "7",
		"SNAPSHOT_RETENTION_KEEP_DAILY":   "14",
		"SNAPSHOT_RETENTION_KEEP_WEEKLY":  "8",
		"SNAPSHOT_RETENTION_KEEP_MONTHLY": "12",
		"SNAPSHOT_RETENTION_MAX_AGE":      "90d",
		"SNAPSHOT_RETENTION_DRY_RUN":      "true",
	}
	for k, want := range wantBackup {
		if v, _ := envValue(t, bc, k); v != want {
			t.Errorf("backup %s = %q, want %q", k, v, want)
		}
	}
	rc := theContainer(t, pts["restore"])
	for k := range wantBackup {
		if strings.HasPrefix(k, "SNAPSHOT_RETENTION_") || k == "SNAPSHOT_COMPRESSION_LEVEL" {
			if _, ok := envOf(rc)[k]; ok {
				t.Errorf("restore sets %s: retention and compression belong to backups", k)
			}
		}
	}
	for k, want := range map[string]string{
		"SNAPSHOT_RESTORE_KEY":          "snapshots/kubeshark-20261126T031500Z.tar.zst",
		"SNAPSHOT_RESTORE_IF_MISSING":   "fail",
		"SNAPSHOT_RESTORE_IF_NOT_EMPTY": "overwrite",
		"SNAPSHOT_RESTORE_PATHS":        "node-1,*/pcapdump/*.pcap",
		"SNAPSHOT_UPLOAD_CONCURRENCY":   "8",
	} {
		if v, _ := envValue(t, rc, k); v != want {
			t.Errorf("restore %s = %q, want %q", k, v, want)
		}
	}
	if r.ConfigMaps[fullname+"-cloud-config"].Data["SNAPSHOT_FILE_DIR"] != "/nfs/snapshots" {
		t.Errorf("file.dir not in the ConfigMap")
	}

	// extraEnv comes last, so it wins over the chart's own entries.
	env, err := podcontract.Environment(harnessInput(r, pts["backup"]), bc)
	if err != nil {
		t.Fatal(err)
	}
	if env["SNAPSHOT_LOG_LEVEL"] != "warn" || env["POD_NAME"] != "pod-1" {
		t.Errorf("extraEnv: SNAPSHOT_LOG_LEVEL %q POD_NAME %q", env["SNAPSHOT_LOG_LEVEL"], env["POD_NAME"])
	}
	var levels []string
	for _, e := range bc.Env {
		if e.Name == "SNAPSHOT_LOG_LEVEL" {
			levels = append(levels, e.Value)
		}
	}
	if !slices.Equal(levels, []string{"warn"}) {
		t.Errorf("SNAPSHOT_LOG_LEVEL entries %v, want only extraEnv's (log.level says debug)", levels)
	}
	if names := bc.Env; names[len(names)-1].Name != "POD_NAME" {
		t.Errorf("extraEnv must be last, got %s", names[len(names)-1].Name)
	}

	for short, pt := range pts {
		c := theContainer(t, pt)
		sp := pt.Spec
		if c.Image != "registry.example.com/snapshot-job@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" || c.ImagePullPolicy != corev1.PullAlways {
			t.Errorf("%s: image %s %s", short, c.Image, c.ImagePullPolicy)
		}
		if sp.PriorityClassName != "batch-low" || sp.NodeSelector["kubernetes.io/os"] != "linux" || len(sp.Tolerations) != 1 ||
			sp.Affinity == nil || sp.Affinity.PodAffinity == nil || len(sp.ImagePullSecrets) != 1 {
			t.Errorf("%s: scheduling fields not rendered: %+v", short, sp)
		}
		if pt.Labels["team"] != "observability" || pt.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "false" {
			t.Errorf("%s: pod labels %v annotations %v", short, pt.Labels, pt.Annotations)
		}
		if q := c.Resources.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse("1Gi")) != 0 {
			t.Errorf("%s: memory limit %s", short, q.String())
		}
		var tmp *corev1.EmptyDirVolumeSource
		var nfs bool
		for _, v := range sp.Volumes {
			if v.Name == "tmp" {
				tmp = v.EmptyDir
			}
			nfs = nfs || v.NFS != nil
		}
		if tmp == nil || tmp.Medium != corev1.StorageMediumMemory || tmp.SizeLimit == nil || tmp.SizeLimit.Cmp(resource.MustParse("2Gi")) != 0 {
			t.Errorf("%s: tmp emptyDir %+v", short, tmp)
		}
		if !nfs || c.VolumeMounts[len(c.VolumeMounts)-1].MountPath != "/nfs" {
			t.Errorf("%s: extra volume/mount missing", short)
		}
	}
}

// TestLongNames: every object name stays within its limit whatever the
// release name (Helm allows 53 characters).
func TestLongNames(t *testing.T) {
	long := strings.Repeat("a", 45) + "-" + strings.Repeat("b", 7)
	r := render(t, "fullnameOverride: "+long)
	for name := range r.CronJobs {
		if len(name) > 52 {
			t.Errorf("CronJob %q has %d characters, limit 52", name, len(name))
		}
	}
	for name := range r.Jobs {
		if len(name) > 63 {
			t.Errorf("Job %q has %d characters, limit 63", name, len(name))
		}
	}
	if _, ok := r.CronJobs[long[:40]+"-backup"]; !ok {
		t.Errorf("names: %v", slices.Collect(maps.Keys(r.CronJobs)))
	}
}

// testIdentity is the private key in the referenced Secret snapshot-age-key.
const testIdentity = "AGE-SECRET-KEY-1TESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTEST"

// The backup gets the public keys and never the private key; the restore
// Jobs get the private key from its Secret and no recipients.
func TestEncryption(t *testing.T) {
	r := render(t, `
cloud: {provider: s3, s3: {bucket: b}}
encryption:
  recipients:
    - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJr8yQ ops@example
  identitySecret: snapshot-age-key
`)
	pts := podTemplates(t, r)
	if len(pts) != 3 {
		t.Fatalf("pod templates %v, want backup, restore and the hook", slices.Collect(maps.Keys(pts)))
	}
	for short, pt := range pts {
		c := theContainer(t, pt)
		env := envOf(c)
		rec, hasRec := env["SNAPSHOT_ENCRYPTION_RECIPIENTS"]
		id, hasID := env["SNAPSHOT_ENCRYPTION_IDENTITY"]
		if short == "backup" {
			if !hasRec || rec.Value != "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p,ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJr8yQ ops@example" {
				t.Errorf("backup: SNAPSHOT_ENCRYPTION_RECIPIENTS = %+v", rec)
			}
			if hasID {
				t.Errorf("backup: has SNAPSHOT_ENCRYPTION_IDENTITY: the backup must never get the private key")
			}
		} else {
			if hasRec {
				t.Errorf("%s: has SNAPSHOT_ENCRYPTION_RECIPIENTS", short)
			}
			ref := id.ValueFrom
			if !hasID || id.Value != "" || ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "snapshot-age-key" || ref.SecretKeyRef.Key != "identity" {
				t.Errorf("%s: SNAPSHOT_ENCRYPTION_IDENTITY = %+v, want it from Secret snapshot-age-key, key identity", short, id)
			}
		}
		// As the kubelet builds it: the private key is in the restore
		// pods' environment and in no backup pod's.
		kenv, err := podcontract.Environment(harnessInput(r, pt), c)
		if err != nil {
			t.Fatalf("%s: %v", short, err)
		}
		if got := kenv["SNAPSHOT_ENCRYPTION_IDENTITY"]; (got == testIdentity) != (short != "backup") {
			t.Errorf("%s: the kubelet's SNAPSHOT_ENCRYPTION_IDENTITY is %q", short, got)
		}
		// The identity's Secret is referenced by that one env entry only.
		for _, f := range c.EnvFrom {
			if f.SecretRef != nil && f.SecretRef.Name == "snapshot-age-key" {
				t.Errorf("%s: the identity Secret is mounted whole with envFrom", short)
			}
		}
		for _, v := range pt.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "snapshot-age-key" {
				t.Errorf("%s: the identity Secret is mounted as a volume", short)
			}
		}
	}
	for name, data := range r.ConfigMaps {
		for k := range data.Data {
			if strings.Contains(k, "ENCRYPTION") {
				t.Errorf("ConfigMap %s carries %s", name, k)
			}
		}
	}

	// Off by default: no encryption variable anywhere.
	for short, pt := range podTemplates(t, render(t, "cloud: {provider: s3, s3: {bucket: b}}")) {
		for name := range envOf(theContainer(t, pt)) {
			if strings.HasPrefix(name, "SNAPSHOT_ENCRYPTION_") {
				t.Errorf("%s: %s set without encryption values", short, name)
			}
		}
	}
	// Another key of the Secret.
	r = render(t, "cloud: {provider: s3, s3: {bucket: b}}\nencryption: {identitySecret: k, identitySecretKey: key.txt}")
	if id := envOf(theContainer(t, podTemplates(t, r)["restore"]))["SNAPSHOT_ENCRYPTION_IDENTITY"]; id.ValueFrom == nil || id.ValueFrom.SecretKeyRef.Key != "key.txt" {
		t.Errorf("identitySecretKey: %+v", id)
	}
}
