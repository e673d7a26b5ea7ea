package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// wantErr describes one expected problem. msg is a substring of Error.Msg.
type wantErr struct {
	file  string
	line  int
	field string
	msg   string
}

// checkErrors asserts that err is an ErrorList holding exactly want, in
// order. Files are compared by base name.
func checkErrors(t *testing.T, err error, want []wantErr) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %d", len(want))
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is %T, want ErrorList: %v", err, err)
	}
	if len(list) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(list), len(want), err)
	}
	for i, w := range want {
		g := list[i]
		if filepath.Base(g.File) != w.file || g.Line != w.line || g.Field != w.field || !strings.Contains(g.Msg, w.msg) {
			t.Errorf("error %d:\n got %s (file %s, line %d, field %q)\nwant file %s, line %d, field %q, message containing %q",
				i, g, filepath.Base(g.File), g.Line, g.Field, w.file, w.line, w.field, w.msg)
		}
	}
}

// writeFiles writes files (relative name -> content) into a new temporary
// directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []wantErr
	}{
		{
			name: "unknown nested field with suggestion",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata:
  name: evidence
spec:
  type: fs
  path: /var/lib/lifeboat/store
  objectLock:
    mdoe: COMPLIANCE
`,
			want: []wantErr{{"f.yaml", 9, "spec.objectLock.mdoe", `unknown field; did you mean "mode"?`}},
		},
		{
			name: "unknown field without suggestion lists the known ones",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata:
  name: evidence
spec:
  type: fs
  path: /var/lib/lifeboat/store
  objectLock:
    mode: COMPLIANCE
    legalHold: true
`,
			want: []wantErr{{"f.yaml", 10, "spec.objectLock.legalHold", "unknown field; known fields: mode, retention"}},
		},
		{
			name: "unknown fields in list items, metadata and top level",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata:
  name: plan
  namespace: default
spec:
  store: s
  keyProvider: k
  sources:
    - etcd:
        endpoint: https://10.0.0.1:2379
    - manifests: {}
specs: {}
`,
			want: []wantErr{
				{"f.yaml", 5, "metadata.namespace", "unknown field; known fields: name, labels, annotations"},
				{"f.yaml", 11, "spec.sources[0].etcd.endpoint", `did you mean "endpoints"?`},
				{"f.yaml", 13, "specs", `did you mean "spec"?`},
			},
		},
		{
			name: "unknown check kind",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
spec:
  backupPlan: p
  select: {latest: true}
  checks:
    - polices: {}
  targets: {rto: 15m, rpo: 1h}
`,
			want: []wantErr{{"f.yaml", 8, "spec.checks[0].polices", `did you mean "policies"?`}},
		},
		{
			name: "bad cron",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata:
  name: nightly
spec:
  cron: "0 2 * *"
  backupPlan: plan
`,
			want: []wantErr{{"f.yaml", 6, "spec.cron", "invalid cron expression \"0 2 * *\": expected exactly 5 fields, found 4"}},
		},
		{
			name: "cron with seconds field",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: nightly}
spec: {cron: "0 0 2 * * *", backupPlan: plan}
`,
			want: []wantErr{{"f.yaml", 4, "spec.cron", "expected exactly 5 fields, found 6"}},
		},
		{
			name: "cron with its own time zone",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: nightly}
spec:
  cron: CRON_TZ=Europe/Paris 0 2 * * *
  backupPlan: plan
`,
			want: []wantErr{{"f.yaml", 5, "spec.cron", "set the time zone with spec.timeZone"}},
		},
		{
			name: "cron that never fires",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: never}
spec:
  backupPlan: plan
  cron: "0 0 30 2 *"
`,
			want: []wantErr{{"f.yaml", 6, "spec.cron", "never fires"}},
		},
		{
			name: "unknown descriptor",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: nightly}
spec:
  backupPlan: plan
  cron: "@fortnightly"
`,
			want: []wantErr{{"f.yaml", 6, "spec.cron", "unrecognized descriptor"}},
		},
		{
			name: "bad time zone",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata:
  name: nightly
spec:
  cron: "0 2 * * *"
  timeZone: America/New_Yrok
  backupPlan: plan
`,
			want: []wantErr{{"f.yaml", 7, "spec.timeZone", `unknown time zone "America/New_Yrok"`}},
		},
		{
			name: "machine-local time zone",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: nightly}
spec:
  cron: "0 2 * * *"
  timeZone: Local
  backupPlan: plan
`,
			want: []wantErr{{"f.yaml", 6, "spec.timeZone", "depends on the machine"}},
		},
		{
			name: "bad durations",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata:
  name: d
spec:
  backupPlan: p
  select: {latest: true}
  checks: [{policies: {}}]
  targets:
    rto: 15 minutes
    rpo: -1h
  timeout: 2w
`,
			want: []wantErr{
				{"f.yaml", 10, "spec.targets.rto", `invalid duration "15 minutes"`},
				{"f.yaml", 11, "spec.targets.rpo", `duration "-1h" is negative`},
				{"f.yaml", 12, "spec.timeout", `invalid duration "2w"`},
			},
		},
		{
			name: "zero durations",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: plan}
spec:
  store: s
  keyProvider: k
  retention: 0d
  sources:
    - etcd:
        endpoints: [https://10.0.0.1:2379]
        dialTimeout: 0s
`,
			want: []wantErr{
				{"f.yaml", 7, "spec.retention", "must be greater than zero"},
				{"f.yaml", 11, "spec.sources[0].etcd.dialTimeout", "must be greater than zero"},
			},
		},
		{
			name: "retention tiers",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: plan}
spec:
  store: s
  keyProvider: k
  retention: {default: 35d, weekly: 7d, monthly: 0d, quarterly: 90d}
  sources:
    - etcd: {endpoints: [https://10.0.0.1:2379]}
`,
			want: []wantErr{
				{"f.yaml", 7, "spec.retention.quarterly", "unknown field; known fields: default, weekly, monthly, yearly"},
			},
		},
		{
			name: "retention tier shorter than the default, or zero",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: plan}
spec:
  store: s
  keyProvider: k
  retention:
    default: 35d
    weekly: 7d
    monthly: 0d
  sources:
    - etcd: {endpoints: [https://10.0.0.1:2379]}
`,
			want: []wantErr{
				{"f.yaml", 9, "spec.retention.weekly", "7d is shorter than spec.retention.default 35d: a tier can only lengthen"},
				{"f.yaml", 10, "spec.retention.monthly", "must be greater than zero (leave the tier out"},
			},
		},
		{
			name: "retention neither a duration nor tiers",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: plan}
spec:
  store: s
  keyProvider: k
  retention: forever
  sources:
    - etcd: {endpoints: [https://10.0.0.1:2379]}
`,
			want: []wantErr{
				{"f.yaml", 7, "spec.retention", `invalid duration "forever"; want a Go duration such as "15m" or "1h30m", or whole days such as "90d", or tiers such as {default: 35d, monthly: 2190d}`},
			},
		},
		{
			name: "application checks",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
spec:
  backupPlan: p
  select: {latest: true}
  scratch: {type: kubeconfig, kubeconfig: /etc/kc}
  checks:
    - http:
        items:
          - {url: "http://api.ehr.svc/healthz"}
          - {url: "https://user:pw@api.{namespace:ehr}.svc/", expectStatus: 700}
          - {url: "ftp://x/{namespace:Bad_NS}"}
    - job:
        items:
          - {name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, namespace: ehr, image: busybox, command: [true]}
          - {name: b, namespace: ehr, image: busybox}
  targets: {rto: 15m, rpo: 1h}
`,
			want: []wantErr{
				{"f.yaml", 11, "spec.checks[0].http.items[0].url", "names no restored namespace: put {namespace:NS} in it"},
				{"f.yaml", 12, "spec.checks[0].http.items[1].url", "holds credentials"},
				{"f.yaml", 12, "spec.checks[0].http.items[1].expectStatus", "700: want an HTTP status"},
				{"f.yaml", 13, "spec.checks[0].http.items[2].url", `"Bad_NS" is not a valid name`},
				{"f.yaml", 13, "spec.checks[0].http.items[2].url", "want an http:// or https:// URL with a host"},
				{"f.yaml", 16, "spec.checks[1].job.items[0].name", "longer than 49 characters"},
				{"f.yaml", 17, "spec.checks[1].job.items[1].command", "required; the command the Job runs"},
			},
		},
		{
			name: "missing required fields point at the parent",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata:
  labels: {team: sre}
spec:
  keyProvider: k
  sources:
    - etcd: {}
`,
			want: []wantErr{
				{"f.yaml", 3, "metadata.name", "required"},
				{"f.yaml", 5, "spec.store", "required"},
				{"f.yaml", 8, "spec.sources[0].etcd.endpoints", "required; list at least one etcd client URL"},
			},
		},
		{
			name: "missing spec",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
`,
			want: []wantErr{
				{"f.yaml", 1, "spec.backupPlan", "required"},
				{"f.yaml", 1, "spec.checks", "required"},
				{"f.yaml", 1, "spec.select", "set exactly one of latest, before, id"},
				{"f.yaml", 1, "spec.targets.rpo", "required"},
				{"f.yaml", 1, "spec.targets.rto", "required"},
			},
		},
		{
			name: "bad enums",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: s}
spec:
  type: gcs
  objectLock:
    mode: compliance
`,
			want: []wantErr{
				{"f.yaml", 5, "spec.type", `unsupported value "gcs"; want one of fs, s3`},
				{"f.yaml", 7, "spec.objectLock.mode", `unsupported value "compliance"; want one of COMPLIANCE, GOVERNANCE (did you mean "COMPLIANCE"?)`},
			},
		},
		{
			name: "field of another type",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: s}
spec:
  type: fs
  path: /var/lib/lifeboat
  bucket: backups
  objectLock: {mode: GOVERNANCE}
`,
			want: []wantErr{
				{"f.yaml", 7, "spec.bucket", "only valid with type s3"},
				{"f.yaml", 8, "spec.objectLock.mode", "an fs store supports COMPLIANCE only"},
			},
		},
		{
			name: "lock and unlocked",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: s}
spec:
  type: s3
  bucket: Backups
  allowUnlocked: true
  objectLock: {mode: COMPLIANCE}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: t}
spec:
  type: s3
  bucket: backups
`,
			want: []wantErr{
				{"f.yaml", 6, "spec.bucket", "not a valid S3 bucket name"},
				{"f.yaml", 7, "spec.allowUnlocked", "cannot be combined with objectLock"},
				{"f.yaml", 13, "spec.objectLock", "required; a store without object locks needs allowUnlocked: true"},
			},
		},
		{
			name: "exactly one source kind per item",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: plan}
spec:
  store: s
  keyProvider: k
  sources:
    - etcd: {endpoints: [https://10.0.0.1:2379]}
      manifests: {}
    - {}
    - encryptionConfig: {}
    - manifests: {}
    - manifests: {}
`,
			want: []wantErr{
				{"f.yaml", 9, "spec.sources[0].manifests", "cannot be combined with etcd; set exactly one of etcd, manifests, encryptionConfig, volumes, vault, velero"},
				{"f.yaml", 10, "spec.sources[1]", "set exactly one of etcd, manifests"},
				{"f.yaml", 11, "spec.sources[2].encryptionConfig", "set exactly one of file, secretRef"},
				{"f.yaml", 13, "spec.sources[4].manifests", "each kind of source once; manifests is already at spec.sources[3]"},
			},
		},
		{
			name: "exactly one backup selector",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
spec:
  backupPlan: p
  select:
    latest: true
    id: 20250601T020000Z-abc
  checks: [{policies: {}}]
  targets: {rto: 15m, rpo: 1h}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: e}
spec:
  backupPlan: p
  select:
    latest: false
  checks:
    - policies:
  targets: {rto: 15m, rpo: 1h}
`,
			want: []wantErr{
				{"f.yaml", 8, "spec.select.id", "cannot be combined with latest"},
				{"f.yaml", 17, "spec.select", "set exactly one of latest, before, id; latest must be true to count"},
				{"f.yaml", 20, "spec.checks[0]", "written with an empty mapping, such as policies: {}"},
			},
		},
		{
			name: "exactly one schedule target",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: nothing}
spec:
  cron: "@daily"
`,
			want: []wantErr{{"f.yaml", 4, "spec", "set exactly one of backupPlan, rotationPolicy, drill"}},
		},
		{
			name: "exactly one KMS key",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: kms}
spec:
  type: awskms
  keyId: 1234abcd-12ab-34cd-56ef-1234567890ab
  alias: alias/lifeboat
  rotation: {strategy: alias}
`,
			want: []wantErr{{"f.yaml", 7, "spec.alias", "cannot be combined with keyId"}},
		},
		{
			name: "key provider rules",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: kms}
spec:
  type: awskms
  keyId: alias/lifeboat
  rotation: {strategy: managed, every: 30d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: vault}
spec:
  type: vault
  keyring: /etc/keyring.json
  rotation: {strategy: alias}
`,
			want: []wantErr{
				{"f.yaml", 6, "spec.keyId", "is an alias; set it as alias instead"},
				{"f.yaml", 7, "spec.rotation.every", "between 90d and 2560d"},
				{"f.yaml", 12, "spec.transitKey", "required"},
				{"f.yaml", 14, "spec.keyring", "only valid with type local"},
				{"f.yaml", 15, "spec.rotation.strategy", "alias is only valid with type awskms"},
			},
		},
		{
			name: "wrong apiVersion",
			in: `apiVersion: lifeboat.dev/v1
kind: Store
metadata: {name: s}
spec: {type: fs, path: /x, allowUnlocked: true}
`,
			want: []wantErr{{"f.yaml", 1, "apiVersion", `unsupported apiVersion "lifeboat.dev/v1"; want lifeboat.dev/v1alpha1`}},
		},
		{
			name: "unknown kind",
			in: `# a comment first
apiVersion: lifeboat.dev/v1alpha1
kind: Shedule
metadata: {name: s}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPolicy
`,
			want: []wantErr{
				{"f.yaml", 3, "kind", `unknown kind "Shedule"; known kinds: Store, KeyProvider, BackupPlan, RotationPolicy, Drill, Schedule, AuditLog (did you mean "Schedule"?)`},
				{"f.yaml", 7, "kind", `unknown kind "BackupPolicy"; known kinds: Store, KeyProvider, BackupPlan, RotationPolicy, Drill, Schedule`},
			},
		},
		{
			name: "missing apiVersion and kind",
			in: `metadata: {name: s}
`,
			want: []wantErr{
				{"f.yaml", 1, "apiVersion", "required"},
				{"f.yaml", 1, "kind", "required; want one of Store"},
			},
		},
		{
			name: "document that is not a mapping",
			in: `- apiVersion: lifeboat.dev/v1alpha1
`,
			want: []wantErr{{"f.yaml", 1, "", "a document must be a mapping"}},
		},
		{
			name: "yaml syntax error",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata:
  name: s
spec:
  type: fs
  path: [/var/lib/lifeboat
`,
			want: []wantErr{{"f.yaml", 7, "", "did not find expected ',' or ']'"}},
		},
		{
			name: "yaml syntax error in a later document",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: s}
spec: {type: fs, path: /x, allowUnlocked: maybe}
---
kind: Store
  name: t
`,
			want: []wantErr{
				{"f.yaml", 4, "spec.allowUnlocked", "want true or false, got a string"},
				{"f.yaml", 7, "", "mapping values are not allowed in this context"},
			},
		},
		{
			name: "duplicate keys",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata:
  name: nightly
spec:
  cron: "0 2 * * *"
  backupPlan: plan
  cron: "0 3 * * *"
metadata: {name: other}
`,
			want: []wantErr{
				{"f.yaml", 8, "spec.cron", "duplicate key; first defined at line 6"},
				{"f.yaml", 9, "metadata", "duplicate key; first defined at line 3"},
			},
		},
		{
			name: "wrong shapes",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata:
  name: plan
  labels: [a, b]
spec:
  store: {name: s}
  keyProvider: k
  sources:
    etcd: {}
`,
			want: []wantErr{
				{"f.yaml", 5, "metadata.labels", "want a mapping, got a list"},
				{"f.yaml", 7, "spec.store", "want a string, got a mapping"},
				{"f.yaml", 9, "spec.sources", "want a list, got a mapping"},
			},
		},
		{
			name: "bad names, labels and selectors",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata:
  name: Control_Plane
  labels:
    app.kubernetes.io/name: "two words"
spec:
  store: S3
  keyProvider: k
  sources:
    - manifests:
        includeNamespaces: [ehr, ehr]
        excludeNamespaces: [ehr]
        labelSelector: "app in (web"
    - volumes:
        labelSelector: "tier!=cache,env in (prod,staging),!canary"
        onError: ignore
`,
			want: []wantErr{
				{"f.yaml", 4, "metadata.name", `"Control_Plane" is not a valid name`},
				{"f.yaml", 6, `metadata.labels["app.kubernetes.io/name"]`, "not a valid label value"},
				{"f.yaml", 8, "spec.store", `"S3" is not a valid name`},
				{"f.yaml", 12, "spec.sources[0].manifests.includeNamespaces[1]", `"ehr" is already listed at spec.sources[0].manifests.includeNamespaces[0]`},
				{"f.yaml", 13, "spec.sources[0].manifests.excludeNamespaces[0]", "also in includeNamespaces"},
				{"f.yaml", 14, "spec.sources[0].manifests.labelSelector", "invalid label selector"},
				{"f.yaml", 17, "spec.sources[1].volumes.onError", `unsupported value "ignore"; want one of fail, partial`},
			},
		},
		{
			name: "credentials in a URL are refused and not repeated",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: vault}
spec:
  type: vault
  address: https://admin:hunter2@vault.example:8200
  transitKey: kek
`,
			want: []wantErr{{"f.yaml", 6, "spec.address", "must not contain credentials"}},
		},
		{
			name: "drill rules",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
spec:
  backupPlan: p
  select: {before: 2025-06-30}
  scratch: {type: embedded, kubeconfig: /root/.kube/config}
  checks:
    - objects:
        items:
          - {apiVersion: apps/v1, kind: deployment, namespace: ehr}
    - objects: {items: [{apiVersion: v1, kind: Namespace, name: ehr}]}
  targets: {rto: 2h, rpo: 1h}
  timeout: 30m
`,
			want: []wantErr{
				{"f.yaml", 6, "spec.select.before", "invalid time \"2025-06-30\"; want an RFC 3339 time"},
			},
		},
		{
			name: "drill rules after decoding",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
spec:
  backupPlan: p
  select: {before: 2025-06-30T00:00:00Z}
  scratch: {type: embedded, kubeconfig: /root/.kube/config}
  checks:
    - objects:
        items:
          - {apiVersion: apps/v1, kind: deployment, namespace: ehr}
    - objects: {items: [{apiVersion: v1, kind: Namespace, name: ehr}]}
  targets: {rto: 2h, rpo: 1h}
  timeout: 30m
`,
			want: []wantErr{
				{"f.yaml", 7, "spec.scratch.kubeconfig", "only valid with type kubeconfig"},
				{"f.yaml", 11, "spec.checks[0].objects.items[0].name", "required"},
				{"f.yaml", 11, "spec.checks[0].objects.items[0].kind", `"deployment" is not a kind`},
				{"f.yaml", 12, "spec.checks[1].objects", "each kind of check once; objects is already at spec.checks[0]"},
				{"f.yaml", 14, "spec.timeout", "30m is shorter than targets.rto (2h)"},
			},
		},
		{
			name: "source rules",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: plan}
spec:
  store: s
  keyProvider: k
  compression: gzip
  sources:
    - encryptionConfig:
        secretRef: {namespace: kube-system, name: enc}
    - vault: {address: "vault:8200"}
    - velero: {namespace: Velero}
    - etcd:
        endpoints: [https://10.0.0.1:2379, https://10.0.0.1:2379]
        certFile: /etc/c.crt
`,
			want: []wantErr{
				{"f.yaml", 7, "spec.compression", `unsupported value "gzip"; want one of zstd, none`},
				{"f.yaml", 10, "spec.sources[0].encryptionConfig.secretRef.key", "required"},
				{"f.yaml", 11, "spec.sources[1].vault", "nothing to back up; set transitKeys, raftSnapshot or kvPaths"},
				{"f.yaml", 11, "spec.sources[1].vault.address", "want an http:// or https:// URL"},
				{"f.yaml", 12, "spec.sources[2].velero.namespace", `"Velero" is not a valid name`},
				{"f.yaml", 14, "spec.sources[3].etcd.endpoints[1]", "is already listed at spec.sources[3].etcd.endpoints[0]"},
				{"f.yaml", 15, "spec.sources[3].etcd.certFile", "needs keyFile as well"},
			},
		},
		{
			name: "selector id and target names",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
spec:
  backupPlan: p
  select: {id: ../other}
  scratch: {type: kubeconfig}
  checks: [{secretsReadable: {}}]
  targets: {rto: 15m, rpo: 1h}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: s}
spec:
  cron: "@weekly"
  rotationPolicy: Quarterly
  startingDeadline: 0s
`,
			want: []wantErr{
				{"f.yaml", 6, "spec.select.id", `"../other" is not a backup ID`},
				{"f.yaml", 7, "spec.scratch.kubeconfig", "required"},
				{"f.yaml", 16, "spec.rotationPolicy", `"Quarterly" is not a valid name`},
				{"f.yaml", 17, "spec.startingDeadline", "must be greater than zero"},
			},
		},
		{
			name: "empty file",
			in:   "",
			want: []wantErr{{"f.yaml", 0, "", "no objects"}},
		},
		{
			name: "only comments and empty documents",
			in:   "# nothing here\n---\n---\n# still nothing\n",
			want: []wantErr{{"f.yaml", 0, "", "no objects"}},
		},
		{
			name: "duplicate names in one file",
			in: `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: s}
spec: {type: fs, path: /a, allowUnlocked: true}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: s}
spec: {type: fs, path: /b, allowUnlocked: true}
`,
			want: []wantErr{{"f.yaml", 8, "metadata.name", `duplicate Store "s"; also defined at f.yaml:3`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Parse("f.yaml", []byte(tt.in))
			if objs != nil {
				t.Errorf("got %d objects with an error, want none", len(objs))
			}
			checkErrors(t, err, tt.want)
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error repeats a credential: %v", err)
			}
		})
	}
}

// base is a valid group of objects that the set tests add to.
const base = `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: store}
spec: {type: fs, path: /var/lib/lifeboat, objectLock: {mode: COMPLIANCE}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: keys}
spec: {type: local, keyring: /var/lib/lifeboat/keyring.json}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: other-keys}
spec: {type: local, keyring: /var/lib/lifeboat/other.json}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: plan}
spec:
  store: store
  keyProvider: keys
  sources: [{etcd: {endpoints: ["https://10.0.0.1:2379"]}}]
`

func TestLoadPathsErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []wantErr
	}{
		{
			name: "duplicate name across two files",
			files: map[string]string{
				"a.yaml": base,
				"b.yaml": `# the same store again
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata:
  name: store
spec: {type: fs, path: /srv/lifeboat, allowUnlocked: true}
`,
			},
			want: []wantErr{{"b.yaml", 5, "metadata.name", `duplicate Store "store"; also defined at `}},
		},
		{
			name: "same name of different kinds is fine, dangling references are not",
			files: map[string]string{
				"a.yaml": base,
				"b.yaml": `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: store}
spec:
  store: stor
  keyProvider: vault
  sources: [{etcd: {endpoints: ["https://10.0.0.1:2379"]}}]
---
apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: weekly}
spec:
  cron: "0 4 * * 0"
  drill: weekly
---
apiVersion: lifeboat.dev/v1alpha1
kind: RotationPolicy
metadata: {name: rotate}
spec:
  keyProvider: keys
  backupPlans: [plan, plna]
`,
			},
			want: []wantErr{
				{"b.yaml", 5, "spec.store", `no Store named "stor" (did you mean "store"?)`},
				{"b.yaml", 6, "spec.keyProvider", `no KeyProvider named "vault"`},
				{"b.yaml", 14, "spec.drill", `no Drill named "weekly"`},
				{"b.yaml", 21, "spec.backupPlans[1]", `no BackupPlan named "plna" (did you mean "plan"?)`},
			},
		},
		{
			name: "references that do not fit",
			files: map[string]string{
				"a.yaml": base,
				"b.yaml": `apiVersion: lifeboat.dev/v1alpha1
kind: RotationPolicy
metadata: {name: rotate}
spec:
  keyProvider: other-keys
  backupPlans:
    - plan
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
spec:
  backupPlan: plan
  select: {latest: true}
  checks:
    - volumeChecksums: {}
    - canary: {}
  targets: {rto: 15m, rpo: 1h}
`,
			},
			want: []wantErr{
				{"b.yaml", 7, "spec.backupPlans[0]", `backup plan "plan" uses key provider "keys", not "other-keys"`},
				{"b.yaml", 16, "spec.checks[0].volumeChecksums", "has no volumes source"},
				{"b.yaml", 17, "spec.checks[1].canary", "has no vault source with transitKeys"},
			},
		},
		{
			name: "a reference to a broken object is not dangling",
			files: map[string]string{
				"a.yaml": strings.Replace(base, "path: /var/lib/lifeboat,", "path: /var/lib/lifeboat, pth: x,", 1),
			},
			want: []wantErr{{"a.yaml", 4, "spec.pth", `did you mean "path"?`}},
		},
		{
			name: "errors of all files together, sorted",
			files: map[string]string{
				"b.yaml":     "kind: Store\n",
				"a.yaml":     "apiVersion: lifeboat.dev/v1alpha1\nkind: Store\nmetadata: {name: s}\nspec: {type: nfs}\n",
				"c/d.yml":    "",
				"c/skip.txt": "not yaml",
			},
			want: []wantErr{
				{"a.yaml", 4, "spec.objectLock", "required"},
				{"a.yaml", 4, "spec.type", `unsupported value "nfs"`},
				{"b.yaml", 1, "apiVersion", "required"},
				{"d.yml", 0, "", "no objects"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			set, err := LoadPaths(dir)
			if set != nil {
				t.Errorf("got a set with an error")
			}
			checkErrors(t, err, tt.want)
		})
	}
}

func TestLoadPathsFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{"empty/readme.txt": "no yaml here"})
	missing := filepath.Join(dir, "missing.yaml")
	_, err := LoadPaths(missing, filepath.Join(dir, "empty"))
	checkErrors(t, err, []wantErr{
		{"empty", 0, "", "no *.yaml or *.yml files in directory"},
		{"missing.yaml", 0, "", "cannot read: no such file or directory"},
	})
	if !strings.Contains(err.Error(), missing+": cannot read") {
		t.Errorf("error does not name the file: %v", err)
	}

	if _, err := LoadPaths(); err == nil {
		t.Error("LoadPaths() with no paths: got no error")
	}
}

// TestLoadPathsConfigMap loads a directory laid out like a mounted
// ConfigMap: files are symlinks into a hidden, timestamped directory, which
// must not be read a second time.
func TestLoadPathsConfigMap(t *testing.T) {
	dir := writeFiles(t, map[string]string{"..2025_06_30_02_00_00.123/objects.yaml": base})
	for _, link := range []struct{ name, target string }{
		{"..data", "..2025_06_30_02_00_00.123"},
		{"objects.yaml", "..data/objects.yaml"},
	} {
		if err := os.Symlink(link.target, filepath.Join(dir, link.name)); err != nil {
			t.Fatal(err)
		}
	}
	set, err := LoadPaths(dir, filepath.Join(dir, "objects.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(set.Objects()); got != 4 {
		t.Errorf("got %d objects, want 4", got)
	}
}

func TestMultiDocument(t *testing.T) {
	in := `---
# leading separator and comments
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: s}
spec: {type: fs, path: /x, allowUnlocked: true}
---

---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: k}
spec: {type: vault, transitKey: kek}
...
---
~
`
	objs, err := Parse("multi.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind, name string
		line       int
	}{{KindStore, "s", 4}, {KindKeyProvider, "k", 11}}
	if len(objs) != len(want) {
		t.Fatalf("got %d objects, want %d", len(objs), len(want))
	}
	for i, w := range want {
		o := objs[i]
		if o.GetKind() != w.kind || o.GetName() != w.name || o.Source() != (Position{"multi.yaml", w.line}) {
			t.Errorf("object %d: got %s %s at %s, want %s %s at multi.yaml:%d", i, o.GetKind(), o.GetName(), o.Source(), w.kind, w.name, w.line)
		}
	}
	if k := objs[1].(*KeyProvider); k.Spec.Mount != "transit" {
		t.Errorf("vault mount default: got %q, want transit", k.Spec.Mount)
	}
}

func TestDefaults(t *testing.T) {
	in := base + `---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: full}
spec:
  store: store
  keyProvider: keys
  sources:
    - volumes: {}
    - vault: {raftSnapshot: true}
    - velero: {}
---
apiVersion: lifeboat.dev/v1alpha1
kind: RotationPolicy
metadata: {name: rotate}
spec: {keyProvider: keys}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: d}
spec:
  backupPlan: plan
  select: {latest: true}
  checks: [{inventory: {}}]
  targets: {rto: 15m, rpo: 1h}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: s}
spec: {cron: "@daily", drill: d}
`
	dir := writeFiles(t, map[string]string{"all.yaml": in})
	set, err := LoadPaths(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := set.Store("store")
	if st.Spec.ObjectLock.Retention != DefaultRetention || DefaultRetention.String() != "2190d" {
		t.Errorf("lock retention: got %s, want 2190d", st.Spec.ObjectLock.Retention)
	}
	p, _ := set.BackupPlan("plan")
	if p.Spec.Retention.Default != DefaultRetention || p.Spec.Compression != CompressionZstd {
		t.Errorf("plan defaults: got retention %s, compression %q", p.Spec.Retention, p.Spec.Compression)
	}
	if p.Spec.Sources[0].Etcd.DialTimeout != DefaultEtcdDialTimeout {
		t.Errorf("etcd dial timeout: got %s", p.Spec.Sources[0].Etcd.DialTimeout)
	}
	full, _ := set.BackupPlan("full")
	vol, vault, velero := full.Spec.Sources[0].Volumes, full.Spec.Sources[1].Vault, full.Spec.Sources[2].Velero
	if vol.Timeout != DefaultVolumesTimeout || vol.OnError != VolumeErrorFail {
		t.Errorf("volumes defaults: got %s, %q", vol.Timeout, vol.OnError)
	}
	if vault.TransitMount != "transit" {
		t.Errorf("vault transit mount: got %q", vault.TransitMount)
	}
	if velero.Namespace != "velero" || velero.Timeout != DefaultVeleroTimeout {
		t.Errorf("velero defaults: got %q, %s", velero.Namespace, velero.Timeout)
	}
	r, _ := set.RotationPolicy("rotate")
	if r.Spec.Rewrap != RewrapAll || r.Spec.RetireOldVersions != RetireNever {
		t.Errorf("rotation defaults: got %q, %q", r.Spec.Rewrap, r.Spec.RetireOldVersions)
	}
	d, _ := set.Drill("d")
	if d.Spec.Scratch.Type != ScratchEmbedded || d.Spec.Timeout != DefaultDrillTimeout {
		t.Errorf("drill defaults: got %q, %s", d.Spec.Scratch.Type, d.Spec.Timeout)
	}
	s, _ := set.Schedule("s")
	if s.Spec.TimeZone != "UTC" || s.Spec.ConcurrencyPolicy != ConcurrencyForbid || s.Spec.StartingDeadline != 0 {
		t.Errorf("schedule defaults: got %q, %q, %s", s.Spec.TimeZone, s.Spec.ConcurrencyPolicy, s.Spec.StartingDeadline)
	}
	if got := set.BackupPlansUsing("keys"); len(got) != 2 {
		t.Errorf("plans using keys: got %d, want 2", len(got))
	}
	if _, ok := set.Store("nope"); ok {
		t.Error("Store(nope) found something")
	}
}

func TestAnchorsAndMerges(t *testing.T) {
	in := `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: a}
spec:
  store: store
  keyProvider: keys
  sources:
    - etcd: &etcd
        endpoints: [https://10.0.0.1:2379]
        caFile: /etc/ca.crt
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: b}
spec:
  store: store
  keyProvider: keys
  sources:
    - etcd:
        <<: *etcd
        dialTimeout: 10s
`
	objs, err := Parse("f.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	b := objs[1].(*BackupPlan).Spec.Sources[0].Etcd
	if b.CAFile != "/etc/ca.crt" || b.DialTimeout.Std() != 10*time.Second {
		t.Errorf("merged etcd source: got %+v", b)
	}

	bad := in + `        caFlie: /etc/other.crt
    - manifests: *etcd
`
	_, err = Parse("f.yaml", []byte(bad))
	checkErrors(t, err, []wantErr{
		// The keys an alias brings in are reported where they are written.
		{"f.yaml", 9, "spec.sources[1].manifests.endpoints", "unknown field"},
		{"f.yaml", 10, "spec.sources[1].manifests.caFile", "unknown field"},
		{"f.yaml", 22, "spec.sources[0].etcd.caFlie", `did you mean "caFile"?`},
	})
}

// TestAliasBomb makes sure that a document whose aliases expand to
// billions of nodes is checked in linear time.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: lifeboat.dev/v1alpha1\nkind: BackupPlan\nmetadata: {name: bomb}\nx0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("x" + itoa(i) + ": &a" + itoa(i) + " [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + itoa(i-1))
		}
		b.WriteString("]\n")
	}
	b.WriteString("spec: {store: s, keyProvider: k, sources: *a9}\n")
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("got no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestExamples(t *testing.T) {
	set, err := LoadPaths("../../schedules", "../../drills")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, o := range set.Objects() {
		counts[o.GetKind()]++
		if o.Source().File == "" || o.Source().Line == 0 {
			t.Errorf("%s %s has no source", o.GetKind(), o.GetName())
		}
	}
	want := map[string]int{KindStore: 2, KindKeyProvider: 3, KindBackupPlan: 2, KindRotationPolicy: 1, KindDrill: 2, KindSchedule: 4}
	for kind, n := range want {
		if counts[kind] != n {
			t.Errorf("%s: got %d, want %d", kind, counts[kind], n)
		}
	}
	if len(set.Stores) != 2 || len(set.Schedules) != 4 {
		t.Errorf("set slices: %d stores, %d schedules", len(set.Stores), len(set.Schedules))
	}

	// Spot checks of what the service relies on.
	cp, ok := set.BackupPlan("control-plane")
	if !ok || cp.Spec.Store != "s3-locked" || len(cp.Spec.Sources) != 3 || fmt.Sprint(cp.Spec.KeyProviderNames()) != "[vault-transit breakglass-kms]" {
		t.Fatalf("control-plane plan: %+v", cp)
	}
	// The shipped examples follow the break-glass pattern: no warning that
	// every key lives in the cluster.
	if len(set.Warnings) != 0 {
		t.Errorf("examples warn: %v", set.Warnings)
	}
	for _, name := range []string{"local-evidence", "s3-locked"} {
		st, _ := set.Store(name)
		if st.Spec.ObjectLock == nil || st.Spec.ObjectLock.Mode != LockCompliance || st.Spec.ObjectLock.Retention != Duration(2190*Day) {
			t.Errorf("store %s lock: %+v", name, st.Spec.ObjectLock)
		}
	}
	d, _ := set.Drill("control-plane")
	if d.Spec.Targets.RTO.Std() != 15*time.Minute || !d.Spec.Select.Latest {
		t.Errorf("drill: %+v", d.Spec)
	}
	if k, ok := set.KeyProvider("vault-transit"); !ok || k.Spec.Mount != "transit" || k.Spec.Rotation.Strategy != RotationManaged {
		t.Errorf("vault-transit: %+v", k)
	}
	weekly, _ := set.Schedule("weekly-drill")
	sched, err := weekly.CronSchedule()
	if err != nil {
		t.Fatal(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	next := sched.Next(time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)) // a Tuesday
	if want := time.Date(2025, 7, 6, 4, 0, 0, 0, ny); !next.Equal(want) {
		t.Errorf("weekly drill next run: got %s, want %s", next, want)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{File: "a.yaml", Line: 3, Column: 5, Field: "spec.type", Msg: "required"}, "a.yaml:3:5: spec.type: required"},
		{&Error{File: "a.yaml", Line: 3, Field: "spec.type", Msg: "required"}, "a.yaml:3: spec.type: required"},
		{&Error{File: "a.yaml", Column: 5, Msg: "no objects"}, "a.yaml: no objects"},
		{&Error{Field: "spec", Msg: "bad"}, "spec: bad"},
		{&Error{Line: 2, Msg: "bad"}, "2: bad"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	list := ErrorList{
		{File: "b.yaml", Line: 1, Msg: "x"},
		{File: "a.yaml", Line: 10, Msg: "y"},
		{File: "a.yaml", Line: 2, Msg: "z"},
	}
	list.Sort()
	if got, want := list.Error(), "a.yaml:2: z\na.yaml:10: y\nb.yaml:1: x"; got != want {
		t.Errorf("list: got %q, want %q", got, want)
	}
	var e *Error
	if !errors.As(error(list), &e) || e.Msg != "z" {
		t.Errorf("errors.As: got %v", e)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		text string // the marshalled form
		err  string
	}{
		{in: "15m", want: 15 * time.Minute, text: "15m"},
		{in: "1h30m", want: 90 * time.Minute, text: "1h30m"},
		{in: "1h", want: time.Hour, text: "1h"},
		{in: "90s", want: 90 * time.Second, text: "1m30s"},
		{in: "1.5s", want: 1500 * time.Millisecond, text: "1.5s"},
		{in: "90d", want: 90 * Day, text: "90d"},
		{in: "2190d", want: 2190 * Day, text: "2190d"},
		{in: "48h", want: 2 * Day, text: "2d"},
		{in: "0d", want: 0, text: "0s"},
		{in: "", err: "empty duration"},
		{in: "d", err: "invalid duration"},
		{in: "1.5d", err: "invalid duration"},
		{in: "1d12h", err: "invalid duration"},
		{in: "-5m", err: "negative"},
		{in: "-5d", err: "negative"},
		{in: "15", err: "invalid duration"},
		{in: "99999999999999999999d", err: "too long"},
		{in: "106752d", err: "too long"},
	}
	for _, tt := range tests {
		d, err := ParseDuration(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseDuration(%q): got %v, %v, want error containing %q", tt.in, d, err, tt.err)
			}
			continue
		}
		if err != nil || d.Std() != tt.want {
			t.Errorf("ParseDuration(%q): got %v, %v, want %v", tt.in, d.Std(), err, tt.want)
			continue
		}
		if d.String() != tt.text {
			t.Errorf("%q: String() = %q, want %q", tt.in, d.String(), tt.text)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Errorf("%q: round trip gave %v, %v", tt.in, back, err)
		}
		text, _ := d.MarshalText()
		var u Duration
		if err := u.UnmarshalText(text); err != nil || u != d {
			t.Errorf("%q: text round trip gave %v, %v", tt.in, u, err)
		}
	}
}

func TestLabelSelector(t *testing.T) {
	good := []string{
		"app=web", "app==web", "app!=web", "app", "!app", "app=", "tier in (a,b)", "tier notin (a)",
		"app.kubernetes.io/name=ehr, env in (prod, staging), !canary",
	}
	bad := []string{
		"", "app in ()", "app in (a,", "app=web,", ",app", "app=a b", "app in a", "app=we*b", "app > 5", "app = (x)", "a/b/c=x",
	}
	for _, s := range good {
		if err := checkLabelSelector(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range bad {
		if err := checkLabelSelector(s); err == nil {
			t.Errorf("%q: got no error", s)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	var doc yaml.Node
	in := "apiVersion: lifeboat.dev/v1alpha1\nkind: BackupPlan\nspec:\n  sources:\n    - etcd: {dialTimeout: x}\n"
	if err := yaml.Unmarshal([]byte(in), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	errs := yamlErrors("f.yaml", root, &yaml.TypeError{Errors: []string{
		"line 5: cannot unmarshal !!str `x` into time.Duration",
		"line 3: cannot unmarshal !!seq into config.BackupPlanSpec",
	}})
	checkErrors(t, errs, []wantErr{
		{"f.yaml", 5, "spec.sources[0].etcd.dialTimeout", "cannot unmarshal !!str `x` into time.Duration"},
		{"f.yaml", 3, "spec", "cannot unmarshal !!seq"},
	})
	errs = yamlErrors("f.yaml", root, errors.New("yaml: anchor 'a' value contains itself"))
	checkErrors(t, errs, []wantErr{{"f.yaml", 0, "", "anchor 'a' value contains itself"}})
}

func TestPosition(t *testing.T) {
	for _, tt := range []struct {
		p    Position
		want string
	}{
		{Position{"a.yaml", 3}, "a.yaml:3"},
		{Position{"a.yaml", 0}, "a.yaml"},
		{Position{"", 3}, "line 3"},
		{Position{}, "-"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v: got %q, want %q", tt.p, got, tt.want)
		}
	}
}

// TestRetentionForms: a plan's retention is one duration or tiers; tiers
// without a default get DefaultRetention; both forms marshal back.
func TestRetentionForms(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want Retention
		back string
	}{
		{"35d", Retention{Default: Duration(35 * Day)}, "35d\n"},
		{"{default: 35d, monthly: 2190d}", Retention{Default: Duration(35 * Day), Monthly: Duration(2190 * Day)}, "default: 35d\nmonthly: 2190d\n"},
		{"{yearly: 3000d}", Retention{Default: DefaultRetention, Yearly: Duration(3000 * Day)}, "default: 2190d\nyearly: 3000d\n"},
	} {
		doc := "apiVersion: lifeboat.dev/v1alpha1\nkind: BackupPlan\nmetadata: {name: p}\nspec:\n  store: s\n  keyProvider: k\n  retention: " + tc.yaml +
			"\n  sources:\n    - etcd: {endpoints: [https://10.0.0.1:2379]}\n"
		objs, err := Parse("f.yaml", []byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		got := objs[0].(*BackupPlan).Spec.Retention
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.yaml, got, tc.want)
		}
		out, err := yaml.Marshal(got)
		if err != nil || string(out) != tc.back {
			t.Errorf("%s: marshals to %q (%v), want %q", tc.yaml, out, err, tc.back)
		}
	}
	at := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) // ISO week 2026-W53
	for tier, want := range map[string]string{TierWeekly: "2026-W53", TierMonthly: "2027-01", TierYearly: "2027", "daily": ""} {
		if got := TierPeriod(tier, at); got != want {
			t.Errorf("TierPeriod(%s) = %q, want %q", tier, got, want)
		}
	}
	for tier, want := range map[string]time.Time{TierWeekly: time.Date(2026, 12, 28, 0, 0, 0, 0, time.UTC),
		TierMonthly: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), TierYearly: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if got := TierPeriodStart(tier, at.Add(13*time.Hour)); !got.Equal(want) {
			t.Errorf("TierPeriodStart(%s) = %s, want %s", tier, got, want)
		}
	}
	plan := &BackupPlan{Spec: BackupPlanSpec{Retention: Retention{Default: Duration(35 * Day), Weekly: Duration(40 * Day), Yearly: Duration(3000 * Day)}}}
	lock := &Store{Spec: StoreSpec{ObjectLock: &ObjectLock{Mode: LockCompliance, Retention: Duration(60 * Day)}}}
	if got := Tiers(plan, lock); len(got) != 2 || got[0] != (Tier{TierWeekly, 60 * Day}) || got[1] != (Tier{TierYearly, 3000 * Day}) {
		t.Errorf("Tiers = %+v: want weekly at the store's 60d lock, then yearly", got)
	}
}
