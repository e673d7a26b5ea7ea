package rotation_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
)

// TestRetirement is the multi-store retire rule: nothing is retired unless
// every store was reached and every backup in every store verified.
func TestRetirement(t *testing.T) {
	v1, v2 := ref("1"), ref("2")
	versions := []keys.Version{
		{Ref: v1, State: keys.StateEnabled},
		{Ref: v2, State: keys.StateEnabled, Primary: true},
	}
	ok := func(ids ...string) *rotation.Result {
		r := &rotation.Result{Primary: v2}
		for _, id := range ids {
			r.Backups = append(r.Backups, rotation.BackupResult{Backup: id, Outcome: rotation.OutcomeRewrapped})
		}
		return r
	}
	bad := func(id string) *rotation.Result {
		r := ok()
		r.Backups = append(r.Backups, rotation.BackupResult{Backup: id, Outcome: rotation.OutcomeFailed, Err: errors.New("unwrap failed")})
		return r
	}
	after := rotation.RetireAfterVerifiedRewrap
	for _, tc := range []struct {
		name     string
		rr       rotation.RunRecord
		versions []keys.Version
		retire   []keys.Ref
		kept     int
		withheld string
	}{
		{"every store verified", rotation.RunRecord{Stores: []string{"a", "b"}, Primary: v2, RetirePolicy: after,
			Results: map[string]*rotation.Result{"a": ok("x"), "b": ok("y")}}, versions, []keys.Ref{v1}, 0, ""},
		{"a failure in the second store blocks", rotation.RunRecord{Stores: []string{"a", "b"}, Primary: v2, RetirePolicy: after,
			Results: map[string]*rotation.Result{"a": ok("x"), "b": bad("y")}}, versions, nil, 0, "1 backup(s) not rewrapped and verified"},
		{"an unreached store blocks", rotation.RunRecord{Stores: []string{"a", "b"}, Primary: v2, RetirePolicy: after,
			Results: map[string]*rotation.Result{"a": ok("x")}}, versions, nil, 0, "store b was not reached"},
		{"policy never", rotation.RunRecord{Stores: []string{"a"}, Primary: v2, RetirePolicy: rotation.RetireNever,
			Results: map[string]*rotation.Result{"a": ok("x")}}, versions, nil, 0, "policy retireOldVersions is never"},
		{"no stores", rotation.RunRecord{Primary: v2, RetirePolicy: after}, versions, nil, 0, "no store was covered"},
		{"rewrapped primary is not the provider's primary: neither is retired", rotation.RunRecord{Stores: []string{"a"}, Primary: v1, RetirePolicy: after,
			Results: map[string]*rotation.Result{"a": ok("x")}}, versions, nil, 0, ""},
		{"already retired versions are left alone", rotation.RunRecord{Stores: []string{"a"}, Primary: v2, RetirePolicy: after,
			Results: map[string]*rotation.Result{"a": ok("x")}},
			[]keys.Version{{Ref: v1, State: keys.StateRetired}, {Ref: v2, State: keys.StateEnabled, Primary: true}}, nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := rotation.Retirement(&tc.rr, tc.versions)
			if !slices.Equal(j.Retire, tc.retire) || len(j.Kept) != tc.kept || j.Withheld != tc.withheld {
				t.Fatalf("Retirement = %+v, want retire %v, %d kept, withheld %q", j, tc.retire, tc.kept, tc.withheld)
			}
		})
	}
}
