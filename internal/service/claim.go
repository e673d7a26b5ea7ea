package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/schedule"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Formats of the objects under runs/ (docs/format.md §7).
const (
	ClaimFormat   = "lifeboat.dev/claim/v1"
	OutcomeFormat = "lifeboat.dev/run-outcome/v1"
)

// Decisions of a claim.
const (
	DecisionRun  = "run"
	DecisionSkip = "skip"
)

// Statuses of an outcome.
const (
	StatusRan       = "ran"
	StatusMissed    = "missed"
	StatusAbandoned = "abandoned"
)

// ReasonAbandoned settles a claimed run whose claimant lost the Lease
// before it recorded an outcome.
const ReasonAbandoned = "abandoned"

// maxRunObject bounds a claim or outcome object.
const maxRunObject = 64 << 10

// Target is what a schedule runs.
type Target struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Claim is runs/<schedule>/<tick>.json.
type Claim struct {
	Format    string    `json:"format"`
	Schedule  string    `json:"schedule"`
	Tick      time.Time `json:"tick"`
	Target    Target    `json:"target"`
	Decision  string    `json:"decision"`
	Reason    string    `json:"reason"`
	Claimant  string    `json:"claimant"`
	ClaimedAt time.Time `json:"claimedAt"`
}

// Outcome is runs/<schedule>/<tick>.outcome.json.
type Outcome struct {
	Format    string    `json:"format"`
	Schedule  string    `json:"schedule"`
	Tick      time.Time `json:"tick"`
	Target    Target    `json:"target"`
	Status    string    `json:"status"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason"`
	Run       string    `json:"run"`
	Record    string    `json:"record"`
	Writer    string    `json:"writer"`
	SettledAt time.Time `json:"settledAt"`
}

// ClaimKey is the key of a tick's claim: runs/<schedule>/<tick UTC as
// 20060102T150405Z>.json.
func ClaimKey(name string, tick time.Time) string {
	return schedule.TickKey(name, tick)
}

// OutcomeKey is the key of a tick's outcome.
func OutcomeKey(schedule string, tick time.Time) string {
	return "runs/" + schedule + "/" + tick.UTC().Format(tickLayout) + ".outcome.json"
}

const tickLayout = "20060102T150405Z"

// parseRunKey reads a key under runs/<schedule>/: the tick and whether it
// is an outcome.
func parseRunKey(schedule, key string) (tick time.Time, outcome, ok bool) {
	rest, found := strings.CutPrefix(key, "runs/"+schedule+"/")
	if !found {
		return time.Time{}, false, false
	}
	switch {
	case strings.HasSuffix(rest, ".outcome.json"):
		rest, outcome = strings.TrimSuffix(rest, ".outcome.json"), true
	case strings.HasSuffix(rest, ".json"):
		rest = strings.TrimSuffix(rest, ".json")
	default:
		return time.Time{}, false, false
	}
	t, err := time.Parse(tickLayout, rest)
	if err != nil {
		return time.Time{}, false, false
	}
	return t, outcome, true
}

// encode is the canonical JSON of v (§5.1), times as RFC 3339 in UTC.
func encode(v any) ([]byte, error) {
	return evidence.MarshalCanonical(v)
}

// decodeStrict reads one JSON object into v, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the object")
	}
	return nil
}

func (c Claim) validate() error {
	switch {
	case c.Format != ClaimFormat:
		return fmt.Errorf("format %q: want %s", c.Format, ClaimFormat)
	case c.Schedule == "":
		return errors.New("schedule: empty")
	case c.Tick.IsZero() || !c.Tick.Equal(c.Tick.Truncate(time.Second)):
		return fmt.Errorf("tick %s: want a whole second", c.Tick)
	case !validTarget(c.Target):
		return fmt.Errorf("target %s %q: want a BackupPlan, RotationPolicy or Drill by name", c.Target.Kind, c.Target.Name)
	case c.Decision != DecisionRun && c.Decision != DecisionSkip:
		return fmt.Errorf("decision %q: want run or skip", c.Decision)
	case c.Decision == DecisionRun && c.Reason != "":
		return errors.New("reason: must be empty for decision run")
	case c.Decision == DecisionSkip && c.Reason == "":
		return errors.New("reason: required for decision skip")
	case c.Decision == DecisionSkip && !skipReason(c.Reason):
		return fmt.Errorf("reason %q: not a reason lifeboat skips a tick for", c.Reason)
	case c.Claimant == "":
		return errors.New("claimant: empty")
	}
	return nil
}

func (o Outcome) validate() error {
	switch {
	case o.Format != OutcomeFormat:
		return fmt.Errorf("format %q: want %s", o.Format, OutcomeFormat)
	case o.Schedule == "":
		return errors.New("schedule: empty")
	case o.Tick.IsZero() || !o.Tick.Equal(o.Tick.Truncate(time.Second)):
		return fmt.Errorf("tick %s: want a whole second", o.Tick)
	case !validTarget(o.Target):
		return fmt.Errorf("target %s %q: want a BackupPlan, RotationPolicy or Drill by name", o.Target.Kind, o.Target.Name)
	case o.Status != StatusRan && o.Status != StatusMissed && o.Status != StatusAbandoned:
		return fmt.Errorf("status %q: want ran, missed or abandoned", o.Status)
	case o.Outcome != evidence.OutcomeSuccess && o.Outcome != evidence.OutcomePartial && o.Outcome != evidence.OutcomeFailure:
		return fmt.Errorf("outcome %q: want success, partial or failure", o.Outcome)
	case o.Status != StatusRan && o.Outcome != evidence.OutcomeFailure:
		return fmt.Errorf("outcome %q: a %s tick is a failure", o.Outcome, o.Status)
	case o.Status == StatusMissed && !skipReason(o.Reason):
		return fmt.Errorf("reason %q: not a reason lifeboat misses a tick for", o.Reason)
	case o.Status == StatusAbandoned && o.Reason != ReasonAbandoned:
		return fmt.Errorf("reason %q: an abandoned tick's reason is %s", o.Reason, ReasonAbandoned)
	case o.Status == StatusRan && o.Outcome == evidence.OutcomeSuccess && o.Reason != "":
		return errors.New("reason: must be empty for a run that succeeded")
	case o.Writer == "":
		return errors.New("writer: empty")
	}
	return nil
}

// skipReason reports whether r is a reason a tick is skipped or missed
// for (docs/format.md §7.1).
func skipReason(r string) bool {
	return schedule.Reason(r).Known() || r == ReasonAbandoned
}

func validTarget(t Target) bool {
	switch t.Kind {
	case config.KindBackupPlan, config.KindRotationPolicy, config.KindDrill:
		return t.Name != ""
	}
	return false
}

// EncodeClaim returns a claim's stored bytes.
func EncodeClaim(c Claim) ([]byte, error) {
	c.Format = ClaimFormat
	c.Tick, c.ClaimedAt = c.Tick.UTC(), c.ClaimedAt.UTC()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("claim %s: %w", ClaimKey(c.Schedule, c.Tick), err)
	}
	return encode(c)
}

// ParseClaim reads a claim's stored bytes.
func ParseClaim(data []byte) (Claim, error) {
	var c Claim
	if err := decodeStrict(data, &c); err != nil {
		return c, fmt.Errorf("claim: %w", err)
	}
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("claim: %w", err)
	}
	return c, nil
}

// EncodeOutcome returns an outcome's stored bytes.
func EncodeOutcome(o Outcome) ([]byte, error) {
	o.Format = OutcomeFormat
	o.Tick, o.SettledAt = o.Tick.UTC(), o.SettledAt.UTC()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("outcome %s: %w", OutcomeKey(o.Schedule, o.Tick), err)
	}
	return encode(o)
}

// ParseOutcome reads an outcome's stored bytes.
func ParseOutcome(data []byte) (Outcome, error) {
	var o Outcome
	if err := decodeStrict(data, &o); err != nil {
		return o, fmt.Errorf("outcome: %w", err)
	}
	if err := o.validate(); err != nil {
		return o, fmt.Errorf("outcome: %w", err)
	}
	return o, nil
}

// putOnce writes data under key with the never-overwrite condition. won
// is false when another writer has the key (store.ErrExists).
func putOnce(ctx context.Context, st store.Store, key string, data []byte, retain time.Time) (won bool, err error) {
	_, err = st.Put(ctx, key, bytes.NewReader(data), store.PutOptions{RetainUntil: retain, SHA256: evidence.Hash(data), Size: int64(len(data))})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrExists):
		// A client that retried after a lost reply finds its own write:
		// the same bytes are this writer's win, not another's.
		got, rerr := readRunObject(ctx, st, key)
		if rerr != nil {
			return false, fmt.Errorf("%s exists; read it back: %w", key, rerr)
		}
		return bytes.Equal(got, data), nil
	default:
		return false, err
	}
}

// readRunObject reads a claim or outcome object, bounded.
func readRunObject(ctx context.Context, st store.Store, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxRunObject+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRunObject {
		return nil, fmt.Errorf("%s: larger than %d bytes", key, maxRunObject)
	}
	return data, nil
}
