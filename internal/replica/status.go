package replica

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// States of a backup on a replica (docs/format.md §9.4).
const (
	// StateReplicated: the replica's manifest has the primary's bytes and
	// every key object of the primary is there.
	StateReplicated = "replicated"
	// StateBehind: committed on the replica, but a key object the primary
	// gained since (a rotation) is not there yet.
	StateBehind = "behind"
	// StateIncomplete: objects of the backup are there, no manifest: a
	// copy in progress or interrupted; or the manifest is there but not
	// every artifact with its size, which lifeboat never leaves (it writes
	// the manifest last): someone put the manifest there first, and
	// replication copies the artifacts.
	StateIncomplete = "incomplete"
	// StateMissing: nothing of the backup is on the replica.
	StateMissing = "missing"
	// StateTampered: the replica's manifest (or another object) differs
	// from the primary's.
	StateTampered = "tampered"
	// StateUnreachable: the replica could not be read.
	StateUnreachable = "unreachable"
)

// Status returns the state on replica of each backup in ms (committed on
// primary), by backup ID. It lists backups/ once in each store and reads
// the manifests committed on both, comparing their bytes. A store that
// cannot be listed makes every state StateUnreachable and returns the
// error.
func Status(ctx context.Context, primary, replica store.Store, ms []catalog.Manifest) (map[string]string, error) {
	out := make(map[string]string, len(ms))
	fill := func(state string) {
		for _, m := range ms {
			out[m.Backup] = state
		}
	}
	if len(ms) == 0 {
		return out, nil
	}
	pkeys, err := backupObjects(ctx, primary)
	if err != nil {
		fill(StateUnreachable)
		return out, err
	}
	rkeys, err := backupObjects(ctx, replica)
	if err != nil {
		fill(StateUnreachable)
		return out, err
	}
	for _, m := range ms {
		id := m.Backup
		have := rkeys[id]
		switch {
		case len(have) == 0:
			out[id] = StateMissing
			continue
		case !listed(have, "manifest.json"):
			out[id] = StateIncomplete
			continue
		}
		if !artifactsListed(m, have) {
			out[id] = StateIncomplete
			continue
		}
		same, err := sameManifest(ctx, primary, replica, id)
		switch {
		case err != nil && errors.Is(err, ErrTampered):
			out[id] = StateTampered
			continue
		case err != nil:
			out[id] = StateUnreachable
			continue
		case !same:
			out[id] = StateTampered
			continue
		}
		out[id] = StateReplicated
		for f := range pkeys[id] {
			if strings.HasPrefix(f, "keys/") && !listed(have, f) {
				out[id] = StateBehind
				break
			}
		}
	}
	return out, nil
}

func listed(have map[string]int64, file string) bool {
	_, ok := have[file]
	return ok
}

// artifactsListed reports whether every artifact of m is listed in have
// with the manifest's size.
func artifactsListed(m catalog.Manifest, have map[string]int64) bool {
	for _, a := range m.Artifacts {
		if size, ok := have["artifacts/"+a.Name]; !ok || size != a.CiphertextSize {
			return false
		}
	}
	return true
}

// backupObjects lists backups/ as backup ID → path under it → size.
func backupObjects(ctx context.Context, st store.Store) (map[string]map[string]int64, error) {
	out := map[string]map[string]int64{}
	for info, err := range st.List(ctx, "backups/") {
		if err != nil {
			return nil, err
		}
		id, file, ok := strings.Cut(strings.TrimPrefix(info.Key, "backups/"), "/")
		if !ok {
			continue
		}
		if out[id] == nil {
			out[id] = map[string]int64{}
		}
		out[id][file] = info.Size
	}
	return out, nil
}

// sameManifest compares the bytes of backup id's manifest in both stores.
// A replica copy that fails its own digest is ErrTampered.
func sameManifest(ctx context.Context, primary, replica store.Store, id string) (bool, error) {
	key := catalog.ManifestKey(id)
	pb, err := readAll(ctx, primary, key, maxManifest)
	if err != nil {
		return false, err
	}
	rb, err := readAll(ctx, replica, key, maxManifest)
	if errors.Is(err, store.ErrIntegrity) {
		return false, ErrTampered
	}
	if err != nil {
		return false, err
	}
	return digest(pb) == digest(rb), nil
}

// Lag is how far a replica is behind (docs/format.md §9.4): the time
// since the completion of the oldest backup in ms whose lock has not
// ended (retainUntil after now) and that is not StateReplicated; 0 when
// there is none. Behind is that backup's completion; zero when none.
func Lag(ms []catalog.Manifest, states map[string]string, now time.Time) (lag time.Duration, behind time.Time) {
	for _, m := range ms {
		if states[m.Backup] == StateReplicated || !m.RetainUntil.After(now) {
			continue
		}
		if behind.IsZero() || m.Completed.Before(behind) {
			behind = m.Completed
		}
	}
	if behind.IsZero() {
		return 0, behind
	}
	return max(now.Sub(behind), 0), behind
}
