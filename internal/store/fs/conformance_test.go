package fs_test

import (
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	var clocks storetest.Clocks
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			s, err := fs.Open(t.Context(), fs.Options{Root: t.TempDir(), Now: clocks.For(t).Now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Advance: func(t *testing.T, d time.Duration) { clocks.For(t).Advance(d) },
	})
}

// TestConformanceRealTime runs the suite the way stores without an
// injected clock run it, which also exercises the suite's waiting path.
func TestConformanceRealTime(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a real retention to pass")
	}
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			s, err := fs.Open(t.Context(), fs.Options{Root: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}
