package rotation_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	vaultkeys "github.com/lifeboat-dr/lifeboat/internal/keys/vault"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// benchBackups is how many backups each benchmark store holds.
const benchBackups = 100

// benchEnv is an fs store holding benchBackups committed backups whose
// artifact is artifactSize bytes, and the local keyring that wraps their
// data keys.
type benchEnv struct {
	st      *fs.Store
	keyring keys.Provider
	n       int
}

// newBenchEnv builds the store outside any timer. Every backup has its
// own data key, key object and manifest, and its own artifact object of
// artifactSize bytes in the store (Stat and List report that size, a Get
// reads that many bytes and checks the digest). To keep 100 × 64 MiB off
// the disk, the first artifact is written with Put and the other 99 are
// hard links to its file, each with its own retention record
// (docs/format.md §1.1): the bytes are the same for all, which rotation
// cannot tell, since it never reads an artifact.
func newBenchEnv(b *testing.B, artifactSize int64) *benchEnv {
	b.Helper()
	dir := b.TempDir()
	k, err := local.Create(context.Background(), local.Options{Path: filepath.Join(dir, "keyring.json")}, "bench-kek")
	if err != nil {
		b.Fatal(err)
	}
	return newBenchEnvWith(b, dir, k, benchBackups, artifactSize)
}

// newBenchEnvWith builds n backups in a store under dir, their data keys
// wrapped by k.
func newBenchEnvWith(b *testing.B, dir string, k keys.Provider, n int, artifactSize int64) *benchEnv {
	b.Helper()
	ctx := context.Background()
	root := filepath.Join(dir, "store")
	st, err := fs.Open(ctx, fs.Options{Root: root})
	if err != nil {
		b.Fatal(err)
	}
	retain := time.Now().Add(24 * time.Hour).UTC()
	var master string
	var masterInfo store.ObjectInfo
	for i := range n {
		started := time.Now().UTC().Truncate(time.Second).Add(-time.Duration(n-i) * time.Minute)
		id, err := catalog.NewID("bench", started)
		if err != nil {
			b.Fatal(err)
		}
		artKey := catalog.ArtifactKey(id, catalog.ArtifactEncryptionConfig)
		if i == 0 {
			if masterInfo, err = st.Put(ctx, artKey, io.LimitReader(rand.Reader, artifactSize), store.PutOptions{RetainUntil: retain, Size: artifactSize}); err != nil {
				b.Fatal(err)
			}
			master = artKey
		} else {
			linkObject(b, root, master, artKey)
		}
		info, err := st.Stat(ctx, artKey)
		if err != nil || info.Size != artifactSize {
			b.Fatalf("artifact %s: %+v, %v; want %d bytes", artKey, info, err, artifactSize)
		}
		dk, err := envelope.NewDataKey()
		if err != nil {
			b.Fatal(err)
		}
		ko, err := envelope.SealKey(ctx, k, id, dk, started)
		if err != nil {
			b.Fatal(err)
		}
		kb, err := ko.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Put(ctx, catalog.KeysPrefix(id)+ko.Name(), bytes.NewReader(kb), store.PutOptions{RetainUntil: retain}); err != nil {
			b.Fatal(err)
		}
		m := catalog.Manifest{
			Format: catalog.ManifestFormat, Backup: id, Plan: "bench", Status: catalog.StatusComplete,
			Started: started, Completed: started.Add(time.Second), RetainUntil: retain,
			KEK: ko.KEK, DataKeyID: dk.ID(),
			Artifacts: []catalog.Artifact{{
				Name: catalog.ArtifactEncryptionConfig, Source: catalog.SourceEncryptionConfig, Compression: "none",
				PlaintextSize: artifactSize, PlaintextSHA256: masterInfo.SHA256,
				CiphertextSize: artifactSize, CiphertextSHA256: masterInfo.SHA256,
			}},
			Lifeboat: catalog.Lifeboat{Version: "bench"},
		}
		if err := m.Seal(dk); err != nil {
			b.Fatal(err)
		}
		dk.Destroy()
		if _, err := catalog.Write(ctx, st, m); err != nil {
			b.Fatal(err)
		}
	}
	return &benchEnv{st: st, keyring: k, n: n}
}

// linkObject makes key a second name of the fs store object from: a hard
// link of its file and a retention record naming key.
func linkObject(b *testing.B, root, from, key string) {
	b.Helper()
	obj := filepath.Join(root, "objects", filepath.FromSlash(key))
	ret := filepath.Join(root, "retention", filepath.FromSlash(key)+".json")
	for _, d := range []string{filepath.Dir(obj), filepath.Dir(ret)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(root, "objects", filepath.FromSlash(from)), obj); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "retention", filepath.FromSlash(from)+".json"))
	if err != nil {
		b.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		b.Fatal(err)
	}
	rec["key"] = key
	out, err := json.Marshal(rec)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(ret, out, 0o440); err != nil {
		b.Fatal(err)
	}
}

// rotateOnce rotates the keyring and rewraps every backup, checking that
// all were rewrapped, and returns the time it took.
func (e *benchEnv) rotateOnce(b *testing.B) time.Duration { return e.rotate(b, 0) }

// rotate is rotateOnce with the given concurrency (zero: the default).
func (e *benchEnv) rotate(b *testing.B, concurrency int) time.Duration {
	b.Helper()
	start := time.Now()
	res, err := rotation.Run(context.Background(), rotation.Options{Store: e.st, Provider: e.keyring, Rotate: true, Concurrency: concurrency})
	d := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if n := len(res.Rewrapped()); n != e.n {
		b.Fatalf("rewrapped %d of %d backups", n, e.n)
	}
	return d
}

// scaleBackups is the number of backups BenchmarkRewrapAtScale rewraps.
const scaleBackups = 10_000

// BenchmarkRewrapAtScale rotates the KEK and rewraps (and verifies) 10,000
// backups, on the local keyring and on Vault transit (a real dev server),
// one backup at a time and with the default concurrency, and reports the
// time per backup. Rewrap touches only key objects, so this is latency:
// the store's and the provider's round trips.
func BenchmarkRewrapAtScale(b *testing.B) {
	for _, provider := range []string{"local", "vault"} {
		b.Run(provider, func(b *testing.B) {
			dir := b.TempDir()
			var k keys.Provider
			switch provider {
			case "local":
				kr, err := local.Create(context.Background(), local.Options{Path: filepath.Join(dir, "keyring.json")}, "bench-kek")
				if err != nil {
					b.Fatal(err)
				}
				k = kr
			case "vault":
				v := testenv.StartVault(b)
				vc, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Address})
				if err != nil {
					b.Fatal(err)
				}
				vc.SetToken(v.Token)
				if err := vc.Sys().Mount("transit", &vaultapi.MountInput{Type: "transit"}); err != nil {
					b.Fatal(err)
				}
				vp, err := vaultkeys.CreateKey(context.Background(), vaultkeys.Options{Address: v.Address, Token: v.Token, Key: "bench-kek"}, vaultkeys.KeySpec{})
				if err != nil {
					b.Fatal(err)
				}
				k = vp
			}
			e := newBenchEnvWith(b, dir, k, scaleBackups, 1<<10)
			for _, c := range []int{1, rotation.DefaultConcurrency} {
				b.Run(fmt.Sprintf("concurrency-%d", c), func(b *testing.B) {
					var total time.Duration
					for b.Loop() {
						total += e.rotate(b, c)
					}
					b.ReportMetric(total.Seconds()*1000/float64(scaleBackups*b.N), "ms/backup")
				})
			}
		})
	}
}

// BenchmarkRewrap rotates the KEK and rewraps (and verifies) 100 backups
// whose artifacts are 1 MiB or 64 MiB each; each iteration is one full
// rotation to a new version. It reports key objects rewrapped per second.
func BenchmarkRewrap(b *testing.B) {
	for _, size := range []int64{1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			e := newBenchEnv(b, size)
			var total time.Duration
			for b.Loop() {
				total += e.rotateOnce(b)
			}
			b.ReportMetric(float64(benchBackups*b.N)/total.Seconds(), "keyobjects/s")
		})
	}
}

// BenchmarkRewrapRatio times the same rotation over 100 backups of 1 MiB
// and of 64 MiB artifacts in one process, alternating, and reports the
// key objects rewrapped per second of each and the
// ratio of the 64 MiB time to the 1 MiB time. Rewrap never reads an
// artifact, so the ratio should stay near 1 (target ≤ 1.2).
func BenchmarkRewrapRatio(b *testing.B) {
	small := newBenchEnv(b, 1<<20)
	large := newBenchEnv(b, 64<<20)
	var ts, tl time.Duration
	i := 0
	for b.Loop() {
		// Alternate which goes first, so drift in the machine's load
		// falls on both alike.
		if i%2 == 0 {
			ts += small.rotateOnce(b)
			tl += large.rotateOnce(b)
		} else {
			tl += large.rotateOnce(b)
			ts += small.rotateOnce(b)
		}
		i++
	}
	b.ReportMetric(float64(benchBackups*b.N)/ts.Seconds(), "1MiB-keyobjects/s")
	b.ReportMetric(float64(benchBackups*b.N)/tl.Seconds(), "64MiB-keyobjects/s")
	b.ReportMetric(tl.Seconds()/ts.Seconds(), "ratio-64MiB/1MiB")
}
