package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
)

func newAuditCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and search the Kubernetes API audit log kept in the locked store",
		Long: `The API server's audit events reach "lifeboat serve" through its webhook
backend (an AuditLog in the configuration). They are sealed into encrypted
segments in the AuditLog's store, each committed by a signed record that is
hash-chained to the one before (docs/format.md §8). These commands read
them back: verify checks every chain, search finds events after a failure.`,
	}
	cmd.AddCommand(newAuditVerifyCommand(a), newAuditSearchCommand(a))
	return cmd
}

// auditFlags are the flags both audit commands take.
type auditFlags struct {
	log, store string
	from, to   string
	keyFiles   []string
}

func (f *auditFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.log, "log", "", "the AuditLog's name (default: the configuration's only one)")
	cmd.Flags().StringVar(&f.store, "store", "", "read this Store instead of the AuditLog's (a copy of it)")
	cmd.Flags().StringVar(&f.from, "from", "", "start of the time range (RFC 3339, or a duration ago such as 24h or 7d)")
	cmd.Flags().StringVar(&f.to, "to", "", "end of the time range (RFC 3339, or a duration ago)")
	cmd.Flags().StringArrayVar(&f.keyFiles, "key", nil, "public key file of a trusted signer (PEM \"PUBLIC KEY\" or base64); repeatable")
}

// parseWhen reads an RFC 3339 time, or a duration before now.
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	return time.Time{}, usageError{fmt.Errorf("--%s %q: want an RFC 3339 time (2026-12-06T10:00:00Z) or a duration ago (24h, 7d)", flag, s)}
}

// load reads the configuration, the time range and the trusted keys.
func (f *auditFlags) load(a *app, name string) (set *config.Set, from, to time.Time, trusted []evidence.PublicKey, err error) {
	if set, err = loadConfigSet(a, name); err != nil {
		return
	}
	if from, to, err = f.times(time.Now()); err != nil {
		return
	}
	if trusted, err = readTrustedKeys(f.keyFiles); err != nil {
		err = fmt.Errorf("%s: %w", name, err)
	}
	return
}

func (f *auditFlags) times(now time.Time) (from, to time.Time, err error) {
	if from, err = parseWhen("from", f.from, now); err != nil {
		return
	}
	if to, err = parseWhen("to", f.to, now); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		err = usageError{errors.New("--to is before --from")}
	}
	return
}

func newAuditVerifyCommand(a *app) *cobra.Command {
	var (
		f      auditFlags
		maxGap time.Duration
	)
	cmd := &cobra.Command{
		Use:   "verify [--log NAME] [--from T] [--to T] [--key PUBKEY_FILE]...",
		Short: "Check that every audit segment chain is whole and unaltered, and report gaps in time",
		Long: `verify walks each stream of the AuditLog (one per serve replica): every
segment record's canonical form and signature, its seq, its link to the
record before (prev, and walFirst following walLast), and that the
segment's bytes in the store have the size and SHA-256 the record gives.
It needs no key provider: the digests are signed.

With --key every record must be signed by one of those keys; without, each
stream's first record's key must have signed the whole stream, and the
output says that origin was not checked. With --from/--to only the
segments whose events fall in the range are read (the chains are still
walked whole). Quiet times longer than --max-gap between segments are
reported: the API server sends events all the time, so a gap means it, the
webhook or the stream was down. Segments no record cites (an interrupted
seal) are warnings; any other object under audit/<log>/ fails.

Keep the head of each stream (seq and SHA-256): at the next audit, the same
record at that seq shows that nothing was cut from the end.

` + exitCodesHelp,
		Example: `  lifeboat audit verify --config /etc/lifeboat --key signer.pub
  lifeboat audit verify --config /etc/lifeboat --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, from, to, trusted, err := f.load(a, "audit verify")
			if err != nil {
				return err
			}
			res, err := job.AuditVerify(cmd.Context(), a.env(set), f.log, f.store, audit.VerifyOptions{From: from, To: to, MaxGap: maxGap, Trusted: trusted})
			if err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			if err := a.render(a.stdout, res, auditVerifyTable(res, f.keyFiles)); err != nil {
				return err
			}
			if !res.OK() {
				return reportedError{fmt.Errorf("audit verify: %w", audit.ErrTampered)}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().DurationVar(&maxGap, "max-gap", audit.DefaultMaxGap, "report quiet times between segments longer than this")
	return cmd
}

func auditVerifyTable(res job.AuditVerifyResult, keyFiles []string) table {
	t := table{header: []string{"STREAM", "CHECK", "RESULT"}}
	add := func(stream, check, result string) { t.rows = append(t.rows, []string{stream, check, result}) }
	add("", "store", res.Store)
	add("", "trust", trustText(res.OriginChecked, keyFiles))
	if len(res.Streams) == 0 {
		add("", "streams", "none: no segment has been sealed in this store")
	}
	for _, s := range res.Streams {
		add(s.Stream, "segments", fmt.Sprintf("%d (%d events; %d read)", s.Segments, s.Events, s.SegmentsRead))
		if !s.First.IsZero() {
			add(s.Stream, "events", s.First.Format(time.RFC3339)+" to "+s.Last.Format(time.RFC3339))
		}
		if h := s.Head; h != nil {
			add(s.Stream, "head", fmt.Sprintf("seq %d %s sha256 %s", h.Record.Seq, h.Key, h.SHA256))
		}
		for _, g := range s.Gaps {
			add(s.Stream, "gap", fmt.Sprintf("%s to %s (%s) between %s and %s", g.From.Format(time.RFC3339), g.To.Format(time.RFC3339), g.Length.Round(time.Second), g.After, g.Before))
		}
		for _, w := range s.Warnings {
			add(s.Stream, "warning", w)
		}
		if s.Problem != "" {
			add(s.Stream, "FAILED", s.Problem)
		} else {
			add(s.Stream, "result", "ok")
		}
	}
	for _, p := range res.Problems {
		add("", "FAILED", p)
	}
	for _, v := range res.Versions {
		add("", "FAILED", fmt.Sprintf("tampering: %s", v))
	}
	verdict := "VALID"
	if !res.OK() {
		verdict = "INVALID"
	}
	add("", "verdict", verdict)
	return t
}

func newAuditSearchCommand(a *app) *cobra.Command {
	var (
		f   auditFlags
		flt audit.Filter
	)
	cmd := &cobra.Command{
		Use:   "search --from T [--to T] [--user U] [--verb V] [--resource R] [--namespace N]",
		Short: "Print the audit events of a time range that match, as JSON lines",
		Long: `search decrypts only the segments whose events overlap --from/--to, with
the AuditLog's key providers, and prints the matching events as the API
server sent them, one JSON object per line, in time order. Each segment is
checked before any of its events is printed: its record's signature and
chain link, its ciphertext digest, every AEAD tag, and its plaintext digest
and event count. A segment that fails stops the search (exit 4).

Records must be signed by the serve signing key: give its public key with
--key (repeatable, for older keys). An event's time is its stageTimestamp.

` + exitCodesHelp,
		Example: `  # who touched Secrets in namespace ehr last night
  lifeboat audit search --config /etc/lifeboat --key signer.pub \
      --from 2026-12-05T22:00:00Z --to 2026-12-06T06:00:00Z --resource secrets --namespace ehr

  # everything one user did in the last 24 hours, as a table for jq
  lifeboat audit search --config /etc/lifeboat --key signer.pub --from 24h --user alice@example.org | jq -r '[.stageTimestamp,.verb,.objectRef.resource,.objectRef.name] | @tsv'`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.from == "" {
				return usageError{errors.New("audit search: --from is required (an RFC 3339 time or a duration ago); --to defaults to now")}
			}
			if len(f.keyFiles) == 0 {
				return usageError{errors.New("audit search: --key is required: the segment records must be checked against the serve signing key")}
			}
			set, from, to, trusted, err := f.load(a, "audit search")
			if err != nil {
				return err
			}
			flt.From, flt.To = from, to
			res, err := job.AuditSearch(cmd.Context(), a.env(set), f.log, f.store, flt, trusted)
			// A stream that fails its checks is left out and named; the
			// others' events are still printed, and the exit code says so.
			for _, m := range res.Matches {
				a.stdout.Write(m.JSON)
				a.stdout.Write([]byte{'\n'})
			}
			fmt.Fprintf(a.stderr, "%d matching events in %d segments (%s events decrypted and checked)\n",
				len(res.Matches), res.Segments, strconv.FormatInt(res.Events, 10))
			if err != nil {
				return fmt.Errorf("audit search: %w", err)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&flt.User, "user", "", "user.username")
	cmd.Flags().StringVar(&flt.Verb, "verb", "", "verb: get, list, watch, create, update, patch, delete, deletecollection")
	cmd.Flags().StringVar(&flt.Resource, "resource", "", "objectRef.resource, or resource/subresource (pods/exec)")
	cmd.Flags().StringVar(&flt.Namespace, "namespace", "", "objectRef.namespace")
	cmd.Flags().StringVar(&flt.Stage, "stage", "", "stage: RequestReceived, ResponseStarted, ResponseComplete, Panic")
	return cmd
}
