package catalog

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// idTimeLayout is the time part of a backup ID.
const idTimeLayout = "20060102T150405Z"

// idSuffixLen is the length of "-<time>-<4 hex>" at the end of an ID.
const idSuffixLen = 1 + len(idTimeLayout) + 1 + 4

// NewID returns a new backup ID for plan at time t:
// <plan>-<UTC time as 20060102T150405Z>-<4 random hex digits>
// (docs/format.md §6), e.g. control-plane-20261125T020000Z-7f3a.
func NewID(plan string, t time.Time) (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new backup ID: %w", err)
	}
	id := plan + "-" + t.UTC().Format(idTimeLayout) + "-" + hex.EncodeToString(b[:])
	if _, _, err := ParseID(id); err != nil {
		return "", fmt.Errorf("new backup ID: %w", err)
	}
	return id, nil
}

// ParseID splits a backup ID into its plan name and the time it names
// (whole seconds, UTC).
func ParseID(id string) (plan string, t time.Time, err error) {
	if err := validName(id); err != nil {
		return "", time.Time{}, fmt.Errorf("backup ID %q: %w", id, err)
	}
	if len(id) < idSuffixLen+1 {
		return "", time.Time{}, fmt.Errorf("backup ID %q: want <plan>-<%s>-<4 hex digits>", id, idTimeLayout)
	}
	plan, rest := id[:len(id)-idSuffixLen], id[len(id)-idSuffixLen:]
	ts, rnd, ok := strings.Cut(rest[1:], "-")
	if rest[0] != '-' || !ok || len(rnd) != 4 || !isLowerHex(rnd) {
		return "", time.Time{}, fmt.Errorf("backup ID %q: want <plan>-<%s>-<4 hex digits>", id, idTimeLayout)
	}
	t, err = time.Parse(idTimeLayout, ts)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("backup ID %q: time part %q is not %s", id, ts, idTimeLayout)
	}
	if plan == "" || strings.HasSuffix(plan, "-") {
		return "", time.Time{}, fmt.Errorf("backup ID %q: no plan name", id)
	}
	return plan, t.UTC(), nil
}

// validName checks a backup or artifact name (docs/format.md §2.1): 1 to
// 128 bytes of [A-Za-z0-9._-], not "." or "..".
func validName(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("must be 1 to 128 bytes, got %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("byte %d (%q) is not one of [A-Za-z0-9._-]", i, c)
		}
	}
	if s == "." || s == ".." {
		return errors.New("not a name")
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// IsSHA256Hex reports whether s is a SHA-256 digest as lifeboat records
// them: 64 lowercase hex digits.
func IsSHA256Hex(s string) bool { return len(s) == 64 && isLowerHex(s) }
