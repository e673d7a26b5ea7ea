package catalog

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// VerifyResult is what Verify found, artifact by artifact.
type VerifyResult struct {
	Backup string `json:"backup"`
	// ReadData reports whether artifacts were decrypted and their
	// plaintext digests checked.
	ReadData bool `json:"readData"`
	// KeyObject is the key object whose data key was used (ReadData), or
	// the newest key object found (otherwise).
	KeyObject string `json:"keyObject,omitempty"`
	// ManifestSHA256 is the SHA-256 of the stored manifest, for comparing
	// with the backup's evidence record.
	ManifestSHA256 string `json:"manifestSHA256"`
	// ManifestMAC is "ok" when the manifest's MAC was checked under the
	// data key (ReadData), "not checked" otherwise.
	ManifestMAC string           `json:"manifestMAC"`
	Artifacts   []ArtifactResult `json:"artifacts"`
	// OK is true when every check passed.
	OK bool `json:"ok"`
}

// ArtifactResult is the verification of one artifact.
type ArtifactResult struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	// Ciphertext and Plaintext are "ok", "failed" or "not checked".
	Ciphertext string `json:"ciphertext"`
	Plaintext  string `json:"plaintext"`
	// Problem says what failed, naming the digest or size; empty when OK.
	Problem string `json:"problem,omitempty"`
}

// Check states in ArtifactResult.
const (
	CheckOK         = "ok"
	CheckFailed     = "failed"
	CheckNotChecked = "not checked"
)

// Verify checks backup id in st against its manifest. Without readData it
// needs no keys: it reads every artifact and compares its size and SHA-256
// with the manifest's ciphertext size and digest, and checks that a key
// object for the manifest's data key is present. With readData it also
// unwraps the data key with u (OpenKey) and decrypts every artifact,
// checking the AEAD tags and the plaintext size and digest.
//
// Every artifact is checked even after a failure. The error, when any check
// failed, wraps ErrVerification and the specific cause, and names each
// failed artifact's object key and which check failed; the result says the
// same per artifact. Errors of the store that are not about the stored
// bytes (a network failure, a cancelled context) end the verification.
func Verify(ctx context.Context, st store.Store, id string, readData bool, u envelope.Unwrapper) (VerifyResult, error) {
	res := VerifyResult{Backup: id, ReadData: readData, ManifestMAC: CheckNotChecked}
	m, sum, err := ReadDigest(ctx, st, id)
	if err != nil {
		return res, fmt.Errorf("verify: %w", err)
	}
	res.ManifestSHA256 = sum
	var dk envelope.DataKey
	var problems []error
	if readData {
		if u == nil {
			return res, fmt.Errorf("verify backup %s: reading data needs a key provider", id)
		}
		var ko envelope.KeyObject
		dk, ko, err = OpenKey(ctx, st, id, m.DataKeyID, u)
		if err != nil {
			return res, fmt.Errorf("verify: %w", err)
		}
		defer dk.Destroy()
		res.KeyObject = KeysPrefix(id) + ko.Name()
		if dk.ID() != m.DataKeyID {
			return res, fmt.Errorf("verify backup %s: key object %s holds data key %s, manifest says %s: %w: %w",
				id, res.KeyObject, dk.ID(), m.DataKeyID, envelope.ErrWrongKey, ErrVerification)
		}
		// Nothing else in a manifest is trusted until its MAC holds.
		if err := m.CheckMAC(dk); err != nil {
			res.ManifestMAC = CheckFailed
			return res, fmt.Errorf("verify backup %s: %w", id, err)
		}
		res.ManifestMAC = CheckOK
	} else {
		kos, err := readKeyObjects(ctx, st, id)
		switch {
		case err != nil && !errors.Is(err, ErrVerification):
			return res, fmt.Errorf("verify: %w", err)
		case err != nil:
			problems = append(problems, err)
		default:
			i := slices.IndexFunc(kos, func(k namedKeyObject) bool { return k.ko.DataKeyID == m.DataKeyID })
			if i < 0 {
				problems = append(problems, fmt.Errorf("backup %s: no key object under %s holds data key %s: %w", id, KeysPrefix(id), m.DataKeyID, ErrVerification))
			} else {
				res.KeyObject = kos[i].key
			}
		}
	}
	for _, a := range m.Artifacts {
		ar := ArtifactResult{Name: a.Name, Key: ArtifactKey(id, a.Name), Ciphertext: CheckOK, Plaintext: CheckNotChecked}
		var err error
		if readData {
			_, err = DecryptArtifact(ctx, st, m, a.Name, dk, io.Discard)
			if err == nil {
				ar.Plaintext = CheckOK
			}
		} else {
			err = checkCiphertext(ctx, st, id, a)
		}
		if err != nil {
			if !errors.Is(err, ErrVerification) {
				return res, fmt.Errorf("verify: %w", err)
			}
			ar.Ciphertext, ar.Problem = CheckFailed, err.Error()
			if readData {
				ar.Plaintext = CheckFailed
			}
			problems = append(problems, err)
		}
		res.Artifacts = append(res.Artifacts, ar)
	}
	if len(problems) > 0 {
		return res, errors.Join(problems...)
	}
	res.OK = true
	return res, nil
}

// checkCiphertext reads artifact a of backup id and compares its size and
// SHA-256 with the manifest.
func checkCiphertext(ctx context.Context, st store.Store, id string, a Artifact) error {
	key := ArtifactKey(id, a.Name)
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return artifactError(id, a.Name, key, "open", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, rerr := io.Copy(h, rc)
	if rerr != nil && !errors.Is(rerr, store.ErrIntegrity) {
		return artifactError(id, a.Name, key, "read", rerr)
	}
	// A store that checks its own digest fails the read at its end; the
	// bytes have all been hashed by then, so say which digest differs
	// from the manifest as well.
	if sum := hex.EncodeToString(h.Sum(nil)); sum != a.CiphertextSHA256 {
		return fmt.Errorf("backup %s: artifact %s (%s): ciphertext SHA-256 is %s, manifest says %s: %w: %w",
			id, a.Name, key, sum, a.CiphertextSHA256, store.ErrIntegrity, ErrVerification)
	}
	if n != a.CiphertextSize {
		return fmt.Errorf("backup %s: artifact %s (%s): ciphertext is %d bytes, manifest says %d: %w: %w",
			id, a.Name, key, n, a.CiphertextSize, store.ErrIntegrity, ErrVerification)
	}
	if rerr != nil {
		return artifactError(id, a.Name, key, "read", rerr)
	}
	return nil
}

// artifactError wraps a failure to open or read an artifact. Missing
// objects and bytes that fail the store's own digest are verification
// failures; anything else (I/O, a cancelled context) is returned as is.
func artifactError(id, name, key, step string, err error) error {
	err = fmt.Errorf("backup %s: artifact %s (%s): %s: %w", id, name, key, step, err)
	if IsDataError(err) {
		return fmt.Errorf("%w: %w", err, ErrVerification)
	}
	return err
}

// IsDataError reports whether err is about the stored bytes themselves
// rather than about reaching them.
func IsDataError(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrIntegrity) ||
		errors.Is(err, envelope.ErrAuthentication) || errors.Is(err, envelope.ErrMismatch) ||
		errors.Is(err, envelope.ErrFormat) || errors.Is(err, envelope.ErrWrongKey)
}

// DecryptArtifact streams the plaintext of artifact name of the backup m
// describes into dst, checking the header, every AEAD tag, and the
// ciphertext and plaintext sizes and digests against m. dst must be
// treated as untrusted until DecryptArtifact returns nil: on error it may
// hold partial output. Errors about the stored bytes wrap ErrVerification.
func DecryptArtifact(ctx context.Context, st store.Store, m Manifest, name string, dk envelope.DataKey, dst io.Writer) (envelope.Result, error) {
	a, ok := m.Artifact(name)
	key := ArtifactKey(m.Backup, name)
	if !ok {
		return envelope.Result{}, fmt.Errorf("backup %s: manifest has no artifact %q", m.Backup, name)
	}
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return envelope.Result{}, artifactError(m.Backup, name, key, "open", err)
	}
	defer rc.Close()
	res, err := envelope.Decrypt(ctx, dst, rc, dk, envelope.Expect{
		Backup: m.Backup, Artifact: name,
		Result: envelope.Result{
			PlaintextSize: a.PlaintextSize, PlaintextSHA256: a.PlaintextSHA256,
			CiphertextSize: a.CiphertextSize, CiphertextSHA256: a.CiphertextSHA256,
		},
	})
	if err != nil {
		return envelope.Result{}, artifactError(m.Backup, name, key, "decrypt", err)
	}
	// Expect skips zero sizes; an empty plaintext must still be empty.
	if res.PlaintextSize != a.PlaintextSize {
		return envelope.Result{}, fmt.Errorf("backup %s: artifact %s (%s): plaintext is %d bytes, manifest says %d: %w: %w",
			m.Backup, name, key, res.PlaintextSize, a.PlaintextSize, envelope.ErrMismatch, ErrVerification)
	}
	return res, nil
}

type namedKeyObject struct {
	key string
	ko  envelope.KeyObject
}

// readKeyObjects reads backup id's key objects, newest first (by created,
// then key). Objects that do not decode are skipped when others do; when
// none decodes, or there is none, the error wraps ErrVerification.
func readKeyObjects(ctx context.Context, st store.Store, id string) ([]namedKeyObject, error) {
	var out []namedKeyObject
	var bad []error
	for info, err := range st.List(ctx, KeysPrefix(id)) {
		if err != nil {
			return nil, fmt.Errorf("backup %s: list key objects: %w", id, err)
		}
		ko, err := ReadKeyObject(ctx, st, info.Key)
		if err != nil {
			if !IsDataError(err) && !errors.Is(err, envelope.ErrKeyObject) {
				return nil, fmt.Errorf("backup %s: %w", id, err)
			}
			bad = append(bad, fmt.Errorf("key object %s: %w", info.Key, err))
			continue
		}
		out = append(out, namedKeyObject{info.Key, ko})
	}
	if len(out) == 0 {
		if len(bad) == 0 {
			return nil, fmt.Errorf("backup %s: no key object under %s: %w", id, KeysPrefix(id), ErrVerification)
		}
		return nil, fmt.Errorf("backup %s: no readable key object: %w: %w", id, errors.Join(bad...), ErrVerification)
	}
	slices.SortFunc(out, func(a, b namedKeyObject) int {
		if c := b.ko.Created.Compare(a.ko.Created); c != 0 {
			return c
		}
		return cmp.Compare(b.key, a.key)
	})
	return out, nil
}

// ReadKeyObject reads and decodes the key object stored under key,
// bounded (envelope.ReadKeyObject); one that does not decode wraps
// envelope.ErrKeyObject.
func ReadKeyObject(ctx context.Context, st store.Store, key string) (envelope.KeyObject, error) {
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return envelope.KeyObject{}, err
	}
	defer rc.Close()
	return envelope.ReadKeyObject(rc)
}

// OpenKey returns backup id's data key, the one with ID dataKeyID (the
// manifest's dataKeyId), unwrapped by u, and the key object it came from.
// It tries the backup's key objects newest first and falls back to the
// next when one names another data key, does not unwrap (a retired or
// unknown KEK version, a failed authentication) or unwraps to another key
// (docs/format.md §3). When none holds the key the error wraps
// ErrVerification (and envelope.ErrWrongKey when a key object held another
// one). The caller must Destroy the key when done.
func OpenKey(ctx context.Context, st store.Store, id, dataKeyID string, u envelope.Unwrapper) (envelope.DataKey, envelope.KeyObject, error) {
	kos, err := readKeyObjects(ctx, st, id)
	if err != nil {
		return envelope.DataKey{}, envelope.KeyObject{}, fmt.Errorf("open data key: %w", err)
	}
	var tried []error
	for _, k := range kos {
		if k.ko.DataKeyID != dataKeyID {
			tried = append(tried, fmt.Errorf("%s: holds data key %s, manifest %s says %s: %w: %w", k.key, k.ko.DataKeyID, ManifestKey(id), dataKeyID, envelope.ErrWrongKey, ErrVerification))
			continue
		}
		dk, err := envelope.OpenKey(ctx, u, id, k.ko)
		if err == nil && dk.ID() != dataKeyID {
			err = fmt.Errorf("unwraps to data key %s, manifest %s says %s: %w: %w", dk.ID(), ManifestKey(id), dataKeyID, envelope.ErrWrongKey, ErrVerification)
			dk.Destroy()
		}
		if err == nil {
			return dk, k.ko, nil
		}
		if ctx.Err() != nil {
			return envelope.DataKey{}, envelope.KeyObject{}, fmt.Errorf("open data key of backup %s: %w", id, ctx.Err())
		}
		tried = append(tried, fmt.Errorf("%s: %w", k.key, err))
	}
	return envelope.DataKey{}, envelope.KeyObject{}, fmt.Errorf("open data key of backup %s: no key object unwraps: %w", id, errors.Join(tried...))
}

// KeyObjectCheck is what became of one key object of a backup when a
// reader tried to unwrap it (CheckKeyObjects).
type KeyObjectCheck struct {
	// Key is the key object's store key; KEK the version it names.
	Key string `json:"key"`
	KEK string `json:"kek"`
	// Unwraps is true when it unwrapped to the manifest's data key.
	Unwraps bool `json:"unwraps"`
	// Problem says why not (a retired version, a provider this reader
	// could not open or has not got, a failed authentication).
	Problem string `json:"problem,omitempty"`
}

// CheckKeyObjects tries every key object of backup id with u, not only
// until one works as OpenKey does, so that a restore plan can show which
// of the backup's recipients (the plan's keyProviders, each KEK version
// rotation added) can still unwrap it. Every unwrapped key is destroyed.
func CheckKeyObjects(ctx context.Context, st store.Store, id, dataKeyID string, u envelope.Unwrapper) ([]KeyObjectCheck, error) {
	kos, err := readKeyObjects(ctx, st, id)
	if err != nil {
		return nil, err
	}
	out := make([]KeyObjectCheck, 0, len(kos))
	for _, k := range kos {
		c := KeyObjectCheck{Key: k.key, KEK: k.ko.KEK.String()}
		switch {
		case k.ko.DataKeyID != dataKeyID:
			c.Problem = fmt.Sprintf("holds data key %s, the manifest names %s", k.ko.DataKeyID, dataKeyID)
		default:
			dk, err := envelope.OpenKey(ctx, u, id, k.ko)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return out, ctx.Err()
				}
				c.Problem = err.Error()
			case dk.ID() != dataKeyID:
				c.Problem = fmt.Sprintf("unwraps to data key %s, the manifest names %s", dk.ID(), dataKeyID)
				dk.Destroy()
			default:
				c.Unwraps = true
				dk.Destroy()
			}
		}
		out = append(out, c)
	}
	return out, nil
}
