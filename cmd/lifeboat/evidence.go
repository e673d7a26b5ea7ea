package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// newEvidenceCommands returns the command groups of evidence and reports:
// `lifeboat evidence ...` and `lifeboat report ...`.
func newEvidenceCommands(a *app) []*cobra.Command {
	return []*cobra.Command{newEvidenceCommand(a), newReportCommand(a)}
}

const verifyExitHelp = `Exit codes: 0 when everything verifies, 4 when verification fails (the
output names the object, the field and the problem), 1 when the files or the
store cannot be read.`

func newEvidenceCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Verify the signed, hash-chained evidence log",
		Long: `Every backup, rotation and drill appends one signed evidence record to a
hash-chained log in the store (docs/format.md §5). These commands check it.`,
	}
	cmd.AddCommand(newEvidenceVerifyCommand(a), newEvidencePublicKeyCommand(a))
	return cmd
}

func newReportCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "List, show and verify signed drill reports",
	}
	cmd.AddCommand(newReportVerifyCommand(a), newReportListCommand(a), newReportShowCommand(a))
	return cmd
}

// verifyProblem is what failed verification, for -o json and yaml.
type verifyProblem struct {
	Object  string `json:"object"`
	Field   string `json:"field,omitempty"`
	Problem string `json:"problem"`
}

func problemOf(err error) *verifyProblem {
	var ve *evidence.VerifyError
	if errors.As(err, &ve) {
		p := &verifyProblem{Object: ve.Object, Field: ve.Field, Problem: ve.Problem}
		if ve.Err != nil {
			p.Problem += ": " + ve.Err.Error()
		}
		return p
	}
	return &verifyProblem{Problem: err.Error()}
}

func (p *verifyProblem) rows() [][]string {
	rows := [][]string{{"problem object", p.Object}}
	if p.Field != "" {
		rows = append(rows, []string{"problem field", p.Field})
	}
	return append(rows, []string{"problem", p.Problem})
}

// signingKeyHelp is the help of every --signing-key flag that signs.
const signingKeyHelp = "evidence signing key: an Ed25519 PEM file (created 0600 on first use), vault:MOUNT/KEY (Vault transit, type ed25519) or awskms:KEY (AWS KMS, ECC_NIST_P256); default: lifeboat/evidence-signing.pem in the user's config directory"

// readTrustedKeys reads the --key files.
func readTrustedKeys(paths []string) ([]evidence.PublicKey, error) {
	var keys []evidence.PublicKey
	for _, p := range paths {
		k, err := evidence.ReadPublicKeyFile(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func trustText(trusted bool, keyFiles []string) string {
	if trusted {
		return "signers checked against --key " + strings.Join(keyFiles, ", ")
	}
	return "not checked: no --key given, so this proves the data unchanged since signing, not who signed it"
}

type evidenceVerifyResult struct {
	Store   string         `json:"store"`
	Valid   bool           `json:"valid"`
	Problem *verifyProblem `json:"problem,omitempty"`
	evidence.VerifyResult
}

// versionWarnings are the lines naming keys with versions lifeboat did
// not write.
func versionWarnings(findings []store.VersionFinding) []string {
	var out []string
	for _, f := range findings {
		out = append(out, "tampering: "+f.String())
	}
	return out
}

func newEvidenceVerifyCommand(a *app) *cobra.Command {
	var storePath, storeName string
	var keyFiles []string
	cmd := &cobra.Command{
		Use:   "verify --store-path DIR [--key PUBKEY_FILE]...",
		Short: "Verify every evidence record: signatures, hash chain, canonical form, names",
		Long: `verify walks the evidence log of a store from record 1 to the newest and
checks each record: its canonical JSON form, its fields, its Ed25519
signature, that the signer is trusted, that seqs are consecutive, that each
record's prev is the SHA-256 of the record before it, and that the named
copy evidence/<seq>-<kind>-<id>.json equals the chain object. Any changed,
removed, reordered or foreign object fails verification.

With --key (repeatable: give every key that signed part of the log), every
record must be signed by one of those keys. Without --key, one key must
have signed the whole log, and the result says that origin was not checked.

The result shows the head: the newest record's seq and SHA-256. Keep it:
if a later verification shows a different record at that seq, or fewer
records, the log was truncated.

Name the store either with --store, a Store object of the --config files
(fs or s3, opened read-only), or with --store-path, the root directory of
an fs store (the directory holding objects/), which needs no configuration:
an auditor can verify a copy of the store on their own machine.

` + verifyExitHelp,
		Example: `  # verify the log against the signer's public key
  lifeboat evidence verify --store-path /var/lib/lifeboat/store --key signer.pub

  # the same, as JSON for an audit record
  lifeboat evidence verify --store-path /mnt/evidence --key signer.pub -o json

  # a configured store, e.g. the Object Lock bucket (AWS credential chain)
  lifeboat evidence verify --config /etc/lifeboat --store s3-locked --key signer.pub

  # get the signer's public key from its private key file (on the lifeboat host)
  lifeboat evidence public-key /etc/lifeboat/evidence-signing.pem > signer.pub`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (storePath == "") == (storeName == "") {
				return usageError{errors.New("evidence verify: name the store with exactly one of --store and --store-path")}
			}
			keys, err := readTrustedKeys(keyFiles)
			if err != nil {
				return fmt.Errorf("evidence verify: %w", err)
			}
			var st store.Store
			if storeName != "" {
				set, err := loadConfigSet(a, "evidence verify")
				if err != nil {
					return err
				}
				cs, ok := set.Store(storeName)
				if !ok {
					return usageError{fmt.Errorf("evidence verify: no Store named %q in the configuration", storeName)}
				}
				if st, err = a.env(set).OpenStore(cmd.Context(), cs, true); err != nil {
					return fmt.Errorf("evidence verify: %w", err)
				}
				storePath = storeName
			} else if st, err = fs.Open(cmd.Context(), fs.Options{Root: storePath, ReadOnly: true, Logger: a.logger}); err != nil {
				return fmt.Errorf("evidence verify: %w", err)
			}
			log := evidence.NewLog(st, nil, nil, evidence.WithLogger(a.logger))
			vr, verr := log.Verify(cmd.Context(), keys...)
			if verr != nil && !errors.Is(verr, evidence.ErrTampered) {
				return verr
			}
			if verr == nil && vr.Records == 0 {
				return fmt.Errorf("evidence verify: no evidence records in store %s", storePath)
			}
			// A store that keeps versions (S3) is read at each key's first
			// version; any other version or delete marker under evidence/
			// was written by someone else.
			if va, ok := st.(store.VersionAuditor); ok {
				findings, err := va.AuditVersions(cmd.Context(), "evidence/")
				if err != nil {
					return fmt.Errorf("evidence verify: %w", err)
				}
				for _, f := range findings {
					verr = errors.Join(verr, fmt.Errorf("evidence: %s: %w", f, evidence.ErrTampered))
				}
				vr.Warnings = append(vr.Warnings, versionWarnings(findings)...)
			}
			res := evidenceVerifyResult{Store: storePath, Valid: verr == nil, VerifyResult: vr}
			t := table{header: []string{"CHECK", "RESULT"}, rows: [][]string{
				{"store", storePath},
				{"records verified", strconv.Itoa(vr.Records)},
				{"reports verified", strconv.Itoa(vr.Reports) + " objects"},
			}}
			if !vr.FirstTime.IsZero() {
				t.rows = append(t.rows, []string{"first record", vr.FirstTime.Format(time.RFC3339)})
			}
			if h := vr.Head; h != nil {
				t.rows = append(t.rows,
					[]string{"head", fmt.Sprintf("seq %d %s (%s)", h.Seq, h.Key, h.Time.Format(time.RFC3339))},
					[]string{"head sha256", h.SHA256})
			}
			t.rows = append(t.rows,
				[]string{"signers", strings.Join(vr.Signers, ", ")},
				[]string{"trust", trustText(vr.TrustedKeys, keyFiles)},
				[]string{"kinds", countsText(vr.Kinds)},
				[]string{"outcomes", countsText(vr.Outcomes)})
			for _, w := range vr.Warnings {
				t.rows = append(t.rows, []string{"warning", w})
			}
			if verr != nil {
				res.Problem = problemOf(verr)
				t.rows = append(t.rows, res.Problem.rows()...)
				t.rows = append(t.rows, []string{"result", "FAILED VERIFICATION"})
			} else {
				t.rows = append(t.rows, []string{"result", "VALID"})
			}
			if err := a.render(cmd.OutOrStdout(), res, t); err != nil {
				return err
			}
			if verr != nil {
				return reportedError{verr}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&storePath, "store-path", "", "root directory of an fs store")
	cmd.Flags().StringVar(&storeName, "store", "", "name of a Store in the --config files (fs or s3)")
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "public key file of a trusted signer (PEM \"PUBLIC KEY\" or base64); repeatable")
	return cmd
}

func countsText(m map[string]int) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

type reportVerifyResult struct {
	File     string         `json:"file"`
	Valid    bool           `json:"valid"`
	Problem  *verifyProblem `json:"problem,omitempty"`
	Signer   string         `json:"signer,omitempty"`
	Trusted  bool           `json:"trusted"`
	Drill    string         `json:"drill,omitempty"`
	RunID    string         `json:"runId,omitempty"`
	BackupID string         `json:"backupId,omitempty"`
	Verdict  string         `json:"verdict,omitempty"`
	Reasons  []string       `json:"reasons,omitempty"`
}

func newReportVerifyCommand(a *app) *cobra.Command {
	var keyFiles []string
	cmd := &cobra.Command{
		Use:   "verify FILE [--key PUBKEY_FILE]...",
		Short: "Verify a drill report offline: canonical form, fields, verdict and signature",
		Long: `verify checks a drill's report.json without any store or network: that it
is canonical JSON, that its fields are valid, that its verdict follows from
its numbers (RTO and RPO against the targets, every check passed), and that
its Ed25519 signature verifies. With --key, the signer must be one of the
given keys; without it, the signature is checked against the report's own
public key, which proves the report unchanged since it was signed but not
who signed it. Any changed byte fails, naming the field and the problem.

report.md and report.html beside it are renderings of report.json and are
not signed; report.json is the record.

A report whose drill failed verifies (exit 0) and shows the verdict FAIL:
this command answers whether the report is authentic.

` + verifyExitHelp,
		Example: `  lifeboat report verify reports/drill-20260301-a1b2/report.json --key signer.pub
  lifeboat report verify report.json --key old-signer.pub --key signer.pub -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			path := argv[0]
			keys, err := readTrustedKeys(keyFiles)
			if err != nil {
				return fmt.Errorf("report verify: %w", err)
			}
			r, verr := evidence.VerifyReportFile(path, keys...)
			if verr != nil && !errors.Is(verr, evidence.ErrTampered) {
				return fmt.Errorf("report verify: %w", verr)
			}
			res := reportVerifyResult{File: path, Valid: verr == nil}
			t := table{header: []string{"CHECK", "RESULT"}, rows: [][]string{{"file", path}}}
			if verr != nil {
				res.Problem = problemOf(verr)
				t.rows = append(t.rows, res.Problem.rows()...)
				t.rows = append(t.rows, []string{"result", "FAILED VERIFICATION"})
			} else {
				res.Signer, res.Trusted = r.Signer, len(keys) > 0
				res.Drill, res.RunID, res.BackupID, res.Verdict, res.Reasons = r.Drill, r.RunID, r.BackupID, r.Verdict, r.Reasons
				backup := r.BackupID
				if backup == "" {
					backup = "none selected"
				}
				t.rows = append(t.rows,
					[]string{"signature", "valid, key " + r.Signer},
					[]string{"trust", trustText(res.Trusted, keyFiles)},
					[]string{"drill", r.Drill},
					[]string{"run", r.RunID},
					[]string{"backup", backup},
					[]string{"drill window", r.Started.Format(time.RFC3339) + " to " + r.Finished.Format(time.RFC3339)},
					[]string{"drill verdict", strings.ToUpper(r.Verdict)})
				for _, reason := range r.Reasons {
					t.rows = append(t.rows, []string{"reason", reason})
				}
				t.rows = append(t.rows, []string{"result", "VALID"})
			}
			if err := a.render(cmd.OutOrStdout(), res, t); err != nil {
				return err
			}
			if verr != nil {
				return reportedError{fmt.Errorf("report verify: %w", verr)}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "public key file of a trusted signer (PEM \"PUBLIC KEY\" or base64); repeatable")
	return cmd
}

type publicKeyResult struct {
	KeyID     string `json:"keyId"`
	PublicKey string `json:"publicKey"`
	PEM       string `json:"pem"`
}

func newEvidencePublicKeyCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "public-key SIGNING_KEY_FILE|vault:MOUNT/KEY|awskms:KEY",
		Short: "Print the public key of an evidence signing key, for verifiers",
		Long: `public-key reads an evidence signing key file (PEM "PRIVATE KEY", mode 0600)
and prints its public key as PEM "PUBLIC KEY", the file that verifiers pass
with --key. The private key is never printed. With -o json or yaml it also
shows the key ID and the base64 form used in records and reports.

vault:MOUNT/KEY names a Vault transit key of type ed25519 (VAULT_ADDR and
VAULT_TOKEN from the environment): its public key is the one Vault exports,
and its private key never leaves Vault. awskms:KEY names an AWS KMS key
(key ID, ARN or alias/NAME) of spec ECC_NIST_P256 and usage SIGN_VERIFY
(region, endpoint and credentials from the AWS SDK's usual chain): its
public key is the one KMS exports, and its private key never leaves KMS.`,
		Example: `  lifeboat evidence public-key /etc/lifeboat/evidence-signing.pem > signer.pub
  lifeboat evidence public-key /etc/lifeboat/evidence-signing.pem -o json
  VAULT_ADDR=https://vault:8200 VAULT_TOKEN=... lifeboat evidence public-key vault:transit/lifeboat-evidence
  AWS_REGION=eu-west-1 lifeboat evidence public-key awskms:alias/lifeboat-evidence > signer.pub`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			s, err := a.env(nil).Signer(cmd.Context(), argv[0], false)
			if err != nil {
				return fmt.Errorf("evidence public-key: %w", err)
			}
			pemData, err := evidence.MarshalPublicKey(s.PublicKey())
			if err != nil {
				return fmt.Errorf("evidence public-key: %w", err)
			}
			if a.output == "table" {
				_, err := cmd.OutOrStdout().Write(pemData)
				return err
			}
			return a.render(cmd.OutOrStdout(), publicKeyResult{
				KeyID: s.KeyID(), PublicKey: s.PublicKey().Base64(), PEM: string(pemData),
			}, table{})
		},
	}
}
