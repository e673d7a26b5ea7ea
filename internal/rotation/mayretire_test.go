package rotation_test

import (
	"slices"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
)

func TestMayRetire(t *testing.T) {
	v1, v2, v3 := ref("1"), ref("2"), ref("3")
	other := keys.Ref{Provider: "vault", Key: "transit/k", Version: "1"}
	bs := func(id string, verified ...keys.Ref) rotation.BackupState {
		return rotation.BackupState{Backup: id, Verified: verified}
	}
	after := rotation.RetireAfterVerifiedRewrap
	tests := []struct {
		name     string
		version  keys.Ref
		state    rotation.State
		retire   bool
		blocking []string
	}{
		{"all verified under primary", v1, rotation.State{after, v2, []keys.Ref{v1, v2}, []rotation.BackupState{bs("a", v2), bs("b", v2)}}, true, nil},
		{"no backups", v1, rotation.State{after, v2, []keys.Ref{v1, v2}, nil}, true, nil},
		{"primary never", v2, rotation.State{after, v2, []keys.Ref{v1, v2}, []rotation.BackupState{bs("a", v1, v2)}}, false, nil},
		{"policy never", v1, rotation.State{rotation.RetireNever, v2, []keys.Ref{v1, v2}, []rotation.BackupState{bs("a", v2)}}, false, nil},
		{"policy empty means never", v1, rotation.State{"", v2, []keys.Ref{v1, v2}, []rotation.BackupState{bs("a", v2)}}, false, nil},
		{"unknown policy", v1, rotation.State{"sometimes", v2, []keys.Ref{v1, v2}, []rotation.BackupState{bs("a", v2)}}, false, nil},
		{"backup verified only under the version", v1, rotation.State{after, v2, []keys.Ref{v1, v2}, []rotation.BackupState{bs("a", v2), bs("b", v1)}}, false, []string{"b"}},
		{"backup with nothing verified", v1, rotation.State{after, v2, []keys.Ref{v1, v2}, []rotation.BackupState{bs("a"), bs("b", v2), bs("c")}}, false, []string{"a", "c"}},
		{"verified under another old enabled version is enough", v1, rotation.State{after, v3, []keys.Ref{v1, v2, v3}, []rotation.BackupState{bs("a", v2), bs("b", v3)}}, true, nil},
		{"verified under a retired version does not count", v1, rotation.State{after, v3, []keys.Ref{v1, v3}, []rotation.BackupState{bs("a", v1, v2)}}, false, []string{"a"}},
		{"verified under another provider's ref does not count", v1, rotation.State{after, v2, []keys.Ref{v1, v2}, []rotation.BackupState{bs("a", other)}}, false, []string{"a"}},
		{"already retired version", v1, rotation.State{after, v3, []keys.Ref{v2, v3}, []rotation.BackupState{bs("a", v3)}}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rotation.MayRetire(tt.version, tt.state)
			if d.Retire != tt.retire || !slices.Equal(d.Blocking, tt.blocking) {
				t.Fatalf("MayRetire(%v) = %+v; want retire %v blocking %v", tt.version, d, tt.retire, tt.blocking)
			}
			if !d.Retire && d.Reason == "" {
				t.Fatal("refusal without a reason")
			}
		})
	}
}
