package evidence

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TierClaimFormat is the format of a retention tier claim (docs/format.md
// §1.2).
const TierClaimFormat = "lifeboat.dev/retention-claim/v1"

const (
	tierClaimPrefix  = "retention/"
	maxTierClaimSize = 64 << 10
)

// TierClaim says that a backup took a retention tier's lock for a period:
// the first complete backup of a plan in a month (say) holds the monthly
// tier, and later backups of that month get the plan's default lock.
type TierClaim struct {
	// Store is the Store's name: a claim copied from another store is not
	// this one's.
	Store    string
	Plan     string
	Tier     string
	Period   string
	BackupID string
	// RetainUntil is the backup's lock.
	RetainUntil time.Time

	Signer, PublicKey, Signature string
}

// TierClaimKey returns the key of plan's claim of tier for period:
// retention/<plan>/<tier>/<period>.json.
func TierClaimKey(plan, tier, period string) string {
	return tierClaimPrefix + plan + "/" + tier + "/" + period + ".json"
}

func (c TierClaim) tree(withSignature bool) map[string]any {
	m := map[string]any{
		"format": TierClaimFormat, "store": c.Store, "plan": c.Plan, "tier": c.Tier, "period": c.Period,
		"backupId": c.BackupID, "retainUntil": formatTime(c.RetainUntil),
		"signer": c.Signer, "publicKey": c.PublicKey,
	}
	if withSignature {
		m["signature"] = c.Signature
	}
	return m
}

func (c TierClaim) validate() error {
	for _, f := range []struct{ name, v string }{{"store", c.Store}, {"plan", c.Plan}, {"tier", c.Tier}, {"period", c.Period}} {
		if err := validID(f.v); err != nil {
			return &fieldError{f.name, err.Error()}
		}
	}
	if err := validID(c.BackupID); err != nil {
		return &fieldError{"backupId", err.Error()}
	}
	return nil
}

// SignTierClaim signs c and returns its canonical JSON.
func (s *Signer) SignTierClaim(c TierClaim) ([]byte, error) {
	c.RetainUntil = c.RetainUntil.UTC()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("evidence: sign retention claim: %w", err)
	}
	c.Signer, c.PublicKey = s.KeyID(), s.pub.Base64()
	t := c.tree(false)
	msg, err := appendCanonical(nil, t, "")
	if err != nil {
		return nil, fmt.Errorf("evidence: sign retention claim: %w", err)
	}
	if t["signature"], err = s.sign(msg); err != nil {
		return nil, fmt.Errorf("evidence: sign retention claim: %w", err)
	}
	return appendCanonical(nil, t, "")
}

// ParseTierClaim parses and checks a claim: canonical text, fields, and
// the signature, by one of trusted (which must not be empty: a claim
// anyone could sign would let a writer of the store shorten locks).
func ParseTierClaim(data []byte, trusted ...PublicKey) (TierClaim, error) {
	if len(trusted) == 0 {
		return TierClaim{}, errors.New("no trusted key to check a retention claim with")
	}
	if len(data) > maxTierClaimSize {
		return TierClaim{}, fmt.Errorf("%d bytes, more than %d", len(data), maxTierClaimSize)
	}
	v, err := parseCanonical(data)
	if err != nil {
		return TierClaim{}, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return TierClaim{}, &fieldError{"", "not a JSON object"}
	}
	d := &decoder{obj: obj}
	if f := d.string("format"); d.err == nil && f != TierClaimFormat {
		return TierClaim{}, &fieldError{"format", fmt.Sprintf("%q: want %q", f, TierClaimFormat)}
	}
	c := TierClaim{Store: d.string("store"), Plan: d.string("plan"), Tier: d.string("tier"), Period: d.string("period"), BackupID: d.string("backupId"),
		RetainUntil: d.time("retainUntil"), Signer: d.string("signer"), PublicKey: d.string("publicKey"), Signature: d.string("signature")}
	d.noOthers()
	if d.err != nil {
		return TierClaim{}, d.err
	}
	if err := c.validate(); err != nil {
		return TierClaim{}, err
	}
	pub, err := checkSignature(obj, c.Signer, c.PublicKey, c.Signature)
	if err != nil {
		return TierClaim{}, err
	}
	if !containsKey(trusted, pub) {
		return TierClaim{}, &fieldError{"publicKey", fmt.Sprintf("signed by key %s, which is not one of the trusted keys (%s)", c.Signer, keyIDs(trusted))}
	}
	return c, nil
}

// ReadTierClaim reads plan's claim of tier for period and checks it: its
// signature by one of trusted, and that it names this store, plan, tier
// and period (a claim copied from another key or store is refused). An absent claim is
// an error wrapping store.ErrNotFound; any other problem wraps
// ErrTampered and names the object.
func ReadTierClaim(ctx context.Context, st StoreLike, storeName, plan, tier, period string, trusted ...PublicKey) (TierClaim, error) {
	key := TierClaimKey(plan, tier, period)
	data, err := readObject(ctx, st, key, maxTierClaimSize)
	if err != nil {
		return TierClaim{}, err
	}
	c, err := ParseTierClaim(data, trusted...)
	if err != nil {
		return TierClaim{}, &VerifyError{Object: key, Problem: err.Error(), Err: ErrTampered}
	}
	if c.Store != storeName || c.Plan != plan || c.Tier != tier || c.Period != period {
		return TierClaim{}, &VerifyError{Object: key, Problem: fmt.Sprintf("claims store %s plan %s tier %s period %s, not this key's in store %s", c.Store, c.Plan, c.Tier, c.Period, storeName), Err: ErrTampered}
	}
	return c, nil
}

// WriteTierClaim signs c and writes it once under its key with the given
// retention. A claim already there with other bytes fails the write with
// an error wrapping store.ErrExists.
func WriteTierClaim(ctx context.Context, st StoreLike, s *Signer, c TierClaim, retainUntil time.Time) error {
	data, err := s.SignTierClaim(c)
	if err != nil {
		return err
	}
	if _, err := putOnce(ctx, st, TierClaimKey(c.Plan, c.Tier, c.Period), data, retainUntil); err != nil {
		return fmt.Errorf("write retention claim: %w", err)
	}
	return nil
}
