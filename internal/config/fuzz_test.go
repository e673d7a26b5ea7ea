package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, that its errors are well
// formed, that every object it accepts has a kind and a name, and that an
// accepted object marshals back to YAML that Parse accepts again, unchanged.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"../../schedules/*.yaml", "../../drills/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{
		"",
		"---\n---\n",
		"~",
		"[1, 2]",
		"apiVersion: lifeboat.dev/v1alpha1\nkind: Store\n",
		"apiVersion: lifeboat.dev/v1alpha1\nkind: Store\nmetadata: {name: s}\nspec: {type: fs, path: /x, allowUnlocked: true}\n",
		"apiVersion: lifeboat.dev/v1alpha1\nkind: Schedule\nmetadata: {name: s}\nspec: {cron: '0 2 * *', timeZone: Mars/Olympus, drill: d}\n",
		"apiVersion: lifeboat.dev/v1alpha1\nkind: Drill\nmetadata: {name: d}\nspec: {backupPlan: p, select: {before: 2025-06-30T00:00:00Z}, checks: [{canary: {}}], targets: {rto: 1d, rpo: 90s}}\n",
		"apiVersion: lifeboat.dev/v1alpha1\nkind: BackupPlan\nmetadata: &m {name: p}\nspec: {store: s, keyProvider: k, sources: [{etcd: {endpoints: [http://e:2379]}}, {<<: {vault: {kvPaths: [a/b]}}}]}\n",
		"a: &a [*a]\n",
		"apiVersion: lifeboat.dev/v1alpha1\nkind: Store\nmetadata: {name: s, name: t}\nspec: {type: fs, path: [/x\n",
		"apiVersion: lifeboat.dev/v1alpha1\nkind: KeyProvider\nmetadata: {name: k, labels: {a/b: c}}\nspec: {type: awskms, alias: alias/x, rotation: {strategy: alias, every: 365d}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Parse("fuzz.yaml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			if objs != nil {
				t.Fatalf("got %d objects with an error", len(objs))
			}
			for _, e := range list {
				if e.File != "fuzz.yaml" || e.Msg == "" || e.Line < 0 || e.Column < 0 {
					t.Fatalf("malformed error %#v", e)
				}
			}
			return
		}
		for _, o := range objs {
			if o.GetName() == "" || o.GetKind() == "" {
				t.Fatalf("object without kind or name: %#v", o)
			}
			out, err := yaml.Marshal(o)
			if err != nil {
				t.Fatalf("marshal %s %s: %v", o.GetKind(), o.GetName(), err)
			}
			again, err := Parse("again.yaml", out)
			if err != nil {
				t.Fatalf("marshalled %s %s does not parse:\n%s\n%v", o.GetKind(), o.GetName(), out, err)
			}
			if len(again) != 1 || !sameObject(o, again[0]) {
				t.Fatalf("round trip changed %s %s:\n%s", o.GetKind(), o.GetName(), out)
			}
		}
	})
}

// sameObject reports whether two objects marshal to the same YAML: the
// same exported content, with nil and empty lists alike.
func sameObject(a, b Object) bool {
	ya, errA := yaml.Marshal(a)
	yb, errB := yaml.Marshal(b)
	return errA == nil && errB == nil && string(ya) == string(yb)
}
