package config

import (
	"slices"
	"testing"
)

const replicaStores = `---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: dr}
spec: {type: fs, path: /var/lib/lifeboat-dr, objectLock: {mode: COMPLIANCE}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: other}
spec: {type: fs, path: /var/lib/lifeboat-other, objectLock: {mode: COMPLIANCE}}
`

// TestReplicas: spec.replicas loads, and the rules of docs/format.md §9.2
// (a replica mirrors one primary store) are errors naming file, line and
// field.
func TestReplicas(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.yaml": base + replicaStores, "b.yaml": `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: replicated}
spec:
  store: store
  keyProvider: keys
  replicas: [dr]
  sources: [{etcd: {endpoints: ["https://10.0.0.1:2379"]}}]
`})
	set, err := LoadPaths(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.BackupPlan("replicated")
	if !slices.Equal(p.Spec.Replicas, []string{"dr"}) {
		t.Fatalf("replicas: %q", p.Spec.Replicas)
	}

	tests := []struct {
		name string
		plan string
		want []wantErr
	}{
		{"twice, its own store, dangling", `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: bad}
spec:
  store: store
  keyProvider: keys
  replicas: [dr, dr, store, dx]
  sources: [{etcd: {endpoints: ["https://10.0.0.1:2379"]}}]
`, []wantErr{
			{"b.yaml", 7, "spec.replicas[1]", `"dr" is listed twice (also spec.replicas[0])`},
			{"b.yaml", 7, "spec.replicas[2]", `"store" is the plan's own store`},
			{"b.yaml", 7, "spec.replicas[3]", `no Store named "dx" (did you mean "dr"?)`},
		}},
		{"a replica written to directly", `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: writes-dr}
spec:
  store: dr
  keyProvider: keys
  sources: [{etcd: {endpoints: ["https://10.0.0.1:2379"]}}]
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: replicated}
spec:
  store: store
  keyProvider: keys
  replicas:
    - dr
  sources: [{etcd: {endpoints: ["https://10.0.0.1:2379"]}}]
`, []wantErr{
			{"b.yaml", 16, "spec.replicas[0]", `store "dr" is backup plan "writes-dr"'s store`},
		}},
		{"two primaries into one replica", `apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: from-other}
spec:
  store: other
  keyProvider: keys
  replicas: [dr]
  sources: [{etcd: {endpoints: ["https://10.0.0.1:2379"]}}]
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: from-store}
spec:
  store: store
  keyProvider: keys
  replicas: [dr]
  sources: [{etcd: {endpoints: ["https://10.0.0.1:2379"]}}]
`, []wantErr{
			{"b.yaml", 7, "spec.replicas[0]", `also a replica of backup plan "from-store"`},
			{"b.yaml", 16, "spec.replicas[0]", `also a replica of backup plan "from-other"`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"a.yaml": base + replicaStores, "b.yaml": tt.plan})
			set, err := LoadPaths(dir)
			if set != nil {
				t.Errorf("got a set with an error")
			}
			checkErrors(t, err, tt.want)
		})
	}
}
