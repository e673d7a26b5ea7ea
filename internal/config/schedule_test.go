package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scheduleDoc is a Schedule of plan (from base) with spec lines added.
func scheduleDoc(spec string) string {
	return base + `---
apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: s}
spec:
  backupPlan: plan
` + spec
}

func TestScheduleJitterAndSkip(t *testing.T) {
	tests := []struct {
		name     string
		spec     string
		want     []wantErr // nil: valid
		jitter   time.Duration
		skipImm  bool
		deadline time.Duration
	}{
		{name: "absent", spec: "  cron: \"0 2 * * *\"\n"},
		{
			name:   "jitter alone",
			spec:   "  cron: \"0 2 * * *\"\n  jitter: 10m\n  skipImmediately: true\n",
			jitter: 10 * time.Minute, skipImm: true,
		},
		{
			name:   "jitter shorter than the deadline",
			spec:   "  cron: \"0 2 * * *\"\n  jitter: 10m\n  startingDeadline: 1h\n",
			jitter: 10 * time.Minute, deadline: time.Hour,
		},
		{
			name: "jitter as long as the deadline",
			spec: "  cron: \"0 2 * * *\"\n  startingDeadline: 10m\n  jitter: 10m\n",
			want: []wantErr{{"all.yaml", 31, "spec.jitter", "10m is not shorter than startingDeadline (10m)"}},
		},
		{
			name: "jitter longer than the deadline",
			spec: "  cron: \"0 2 * * *\"\n  jitter: 2h\n  startingDeadline: 1h\n",
			want: []wantErr{{"all.yaml", 30, "spec.jitter", "2h is not shorter than startingDeadline (1h)"}},
		},
		{
			name: "explicit zero jitter",
			spec: "  cron: \"0 2 * * *\"\n  jitter: 0s\n",
			want: []wantErr{{"all.yaml", 30, "spec.jitter", "must be greater than zero"}},
		},
		{
			name: "negative jitter",
			spec: "  cron: \"0 2 * * *\"\n  jitter: -5m\n",
			want: []wantErr{{"all.yaml", 30, "spec.jitter", `duration "-5m" is negative`}},
		},
		{
			name: "skipImmediately not a bool",
			spec: "  cron: \"0 2 * * *\"\n  skipImmediately: soon\n",
			want: []wantErr{{"all.yaml", 30, "spec.skipImmediately", "want true or false"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"all.yaml": scheduleDoc(tt.spec)})
			set, err := LoadPaths(dir)
			if tt.want != nil {
				checkErrors(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s, _ := set.Schedule("s")
			if s.Spec.Jitter.Std() != tt.jitter || s.Spec.SkipImmediately != tt.skipImm || s.Spec.StartingDeadline.Std() != tt.deadline {
				t.Errorf("got jitter %s, skipImmediately %v, startingDeadline %s; want %s, %v, %s",
					s.Spec.Jitter, s.Spec.SkipImmediately, s.Spec.StartingDeadline, tt.jitter, tt.skipImm, tt.deadline)
			}
		})
	}
}

func TestScheduleWarnings(t *testing.T) {
	tests := []struct {
		cron string
		want string // "": no warning; else a substring of the message
	}{
		{cron: "@every 5s", want: `"@every 5s" fires every 5s, more often than once a minute`},
		{cron: "@every 59s", want: "fires every 59s"},
		{cron: "@every 500ms", want: "fires every 1s"}, // the cron library's shortest interval
		{cron: "@every 1m"},
		{cron: "@every 90s"},
		{cron: "* * * * *"},
		{cron: "*/1 * * * *"},
		{cron: "@hourly"},
		{cron: "0 2 * * *"},
	}
	for _, tt := range tests {
		t.Run(tt.cron, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"all.yaml": scheduleDoc("  cron: \"" + tt.cron + "\"\n")})
			set, err := LoadPaths(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if len(set.Warnings) != 0 {
					t.Fatalf("got warnings %v, want none", set.Warnings)
				}
				return
			}
			if len(set.Warnings) != 1 {
				t.Fatalf("got %d warnings %v, want 1", len(set.Warnings), set.Warnings)
			}
			w := set.Warnings[0]
			if filepath.Base(w.File) != "all.yaml" || w.Line != 29 || w.Column != 3 || w.Field != "spec.cron" || !strings.Contains(w.Msg, tt.want) {
				t.Errorf("got %s (file %s, line %d, column %d, field %q), want all.yaml:29:3, spec.cron, message containing %q",
					w, filepath.Base(w.File), w.Line, w.Column, w.Field, tt.want)
			}
		})
	}
}

func TestWarningsSortedAndNeverFail(t *testing.T) {
	second := `---
apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: t}
spec: {cron: "@every 10s", backupPlan: plan}
`
	dir := writeFiles(t, map[string]string{
		"b.yaml": scheduleDoc("  cron: \"@every 5s\"\n") + second,
		"a.yaml": `apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: u}
spec: {cron: "@every 1s", backupPlan: plan}
`,
	})
	set, err := LoadPaths(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range set.Warnings {
		got = append(got, filepath.Base(w.File)+":"+w.Field+":"+strings.SplitN(w.Msg, " ", 2)[0])
	}
	want := []string{`a.yaml:spec.cron:"@every`, `b.yaml:spec.cron:"@every`, `b.yaml:spec.cron:"@every`}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
	if set.Warnings[1].Line != 29 || set.Warnings[2].Line != 34 {
		t.Errorf("b.yaml warning lines: got %d, %d; want 29, 34", set.Warnings[1].Line, set.Warnings[2].Line)
	}

	// A warning never stands in for an error.
	dir = writeFiles(t, map[string]string{"all.yaml": scheduleDoc("  cron: \"@every 5s\"\n  jitter: 1h\n  startingDeadline: 1m\n")})
	if _, err := LoadPaths(dir); err == nil {
		t.Fatal("jitter longer than startingDeadline: got no error")
	}
}

func TestWarningString(t *testing.T) {
	tests := []struct {
		w    Warning
		want string
	}{
		{Warning{File: "s.yaml", Line: 7, Column: 3, Field: "spec.cron", Msg: "often"}, "s.yaml:7:3: spec.cron: often"},
		{Warning{File: "s.yaml", Field: "spec.cron", Msg: "often"}, "s.yaml: spec.cron: often"},
		{Warning{Msg: "often"}, "often"},
	}
	for _, tt := range tests {
		if got := tt.w.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// TestKeyProviders: a plan may list several key providers; listing both
// fields, a name twice or an unknown name is an error naming the field;
// `validate` warns when every provider of a plan lives in the cluster
// (a Vault Service, a keyring mounted from a Secret) and not when a
// break-glass provider outside it is listed.
func TestKeyProviders(t *testing.T) {
	providers := `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: s}
spec: {type: fs, path: /var/lib/lifeboat/store, objectLock: {mode: COMPLIANCE}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: vault-in-cluster}
spec: {type: vault, address: "https://vault.vault.svc:8200", transitKey: kek}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: vault-short}
spec: {type: vault, address: "http://vault:8200", transitKey: kek}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: secret-keyring}
spec: {type: local, keyring: /var/run/secrets/lifeboat/keyring.json}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: kms}
spec: {type: awskms, alias: alias/breakglass, region: us-west-2}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: vault-outside}
spec: {type: vault, address: "https://vault.example.org:8200", transitKey: kek}
---
`
	plan := func(keys string) string {
		return providers + "apiVersion: lifeboat.dev/v1alpha1\nkind: BackupPlan\nmetadata: {name: p}\nspec:\n  store: s\n" + keys + "  sources:\n    - etcd: {endpoints: [\"https://127.0.0.1:2379\"]}\n"
	}
	for _, tc := range []struct {
		name, keys, warn, err string
	}{
		{"one in-cluster vault", "  keyProvider: vault-in-cluster\n", "Vault at the cluster Service vault.vault.svc", ""},
		{"all in cluster", "  keyProviders: [vault-short, secret-keyring]\n", "vault-short (Vault at the in-cluster name vault), secret-keyring (a keyring mounted from a Secret", ""},
		{"break-glass kms", "  keyProviders: [vault-in-cluster, kms]\n", "", ""},
		{"vault outside", "  keyProvider: vault-outside\n", "", ""},
		{"both fields", "  keyProvider: kms\n  keyProviders: [kms]\n", "", "spec.keyProviders: set one of keyProvider and keyProviders"},
		{"twice", "  keyProviders: [kms, vault-outside, kms]\n", "", `spec.keyProviders[2]: "kms" is listed twice`},
		{"unknown", "  keyProviders: [kms, breakglas]\n", "", `spec.keyProviders[1]: no KeyProvider named "breakglas"`},
		{"none", "", "", "spec.keyProvider: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"all.yaml": plan(tc.keys)})
			set, err := LoadPaths(dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.warn == "" {
				if len(set.Warnings) != 0 {
					t.Fatalf("warnings %v, want none", set.Warnings)
				}
				return
			}
			if len(set.Warnings) != 1 || !strings.Contains(set.Warnings[0].Msg, tc.warn) || !strings.Contains(set.Warnings[0].Msg, "break-glass") || set.Warnings[0].Line == 0 {
				t.Fatalf("warnings %v, want one at a line containing %q", set.Warnings, tc.warn)
			}
		})
	}
}
