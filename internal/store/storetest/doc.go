// Package storetest is the conformance suite of store.Store: every Store
// implementation and every fake used in tests passes Run, so code written
// against one store behaves the same on all of them (the model is restic's
// backend test suite).
//
// An implementation's test calls Run with a Harness that makes fresh,
// empty stores and, for stores with an injected clock, moves that clock:
//
//	func TestConformance(t *testing.T) {
//		var clocks storetest.Clocks
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) store.Store {
//				s, err := fs.Open(t.Context(), fs.Options{Root: t.TempDir(), Now: clocks.For(t).Now})
//				if err != nil {
//					t.Fatal(err)
//				}
//				return s
//			},
//			Advance: func(t *testing.T, d time.Duration) { clocks.For(t).Advance(d) },
//		})
//	}
//
// The suite checks behaviour every caller may rely on: round trips, the
// fields Stat reports, no overwrite, atomic Put under failing readers,
// cancelled contexts and wrong expected digests, Get offsets, the key rule
// of store.ValidateKey, List's prefix filtering and byte-wise key order,
// retention on Delete, and concurrent Puts of one key.
package storetest
