package wire

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
)

// TestPlanKeysUnwrap: a key object wrapped by either of two keyrings
// unwraps through PlanKeys holding both, in either order; one wrapped by a
// keyring PlanKeys lacks fails with keys.ErrKeyNotFound naming what was
// opened and what was not available.
func TestPlanKeysUnwrap(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "a.json")}, "a-kek")
	if err != nil {
		t.Fatal(err)
	}
	b, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "b.json")}, "b-kek")
	if err != nil {
		t.Fatal(err)
	}
	c, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "c.json")}, "c-kek")
	if err != nil {
		t.Fatal(err)
	}
	dk, err := envelope.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	for _, pk := range []PlanKeys{
		{Names: []string{"a", "b"}, Providers: []keys.Provider{a, b}},
		{Names: []string{"b", "a"}, Providers: []keys.Provider{b, a}},
	} {
		for _, w := range []envelope.Wrapper{a, b} {
			ko, err := envelope.SealKey(ctx, w, "p-20260101T000000Z-0001", dk, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			got, err := envelope.OpenKey(ctx, pk, "p-20260101T000000Z-0001", ko)
			if err != nil || got.ID() != dk.ID() {
				t.Fatalf("%v unwrapping %s: %v", pk.Names, ko.KEK, err)
			}
			got.Destroy()
		}
	}
	ko, err := envelope.SealKey(ctx, c, "p-20260101T000000Z-0001", dk, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pk := PlanKeys{Names: []string{"a"}, Providers: []keys.Provider{a}, Unavailable: []string{"vault: connection refused"}}
	_, err = envelope.OpenKey(ctx, pk, "p-20260101T000000Z-0001", ko)
	if !errors.Is(err, keys.ErrKeyNotFound) || !strings.Contains(err.Error(), "opened: a; not available here: vault") {
		t.Fatalf("foreign key object: %v", err)
	}
}
