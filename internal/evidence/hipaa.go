package evidence

import (
	"fmt"
	"strings"
)

// DrillHIPAA returns the HIPAA rows of docs/hipaa.md that a drill report
// cites, each filled with what this run showed. Call it after Verdict,
// Reasons, Phases, Checks and Measured are set; the drill may add rows of
// its own.
func DrillHIPAA(r Report) []HIPAARow {
	verdict := strings.ToUpper(r.Verdict)
	restored := "no backup was selected"
	if r.BackupID != "" {
		restored = "restored backup " + r.BackupID + " into a scratch cluster"
	}
	var phases []string
	for _, p := range r.Phases {
		phases = append(phases, fmt.Sprintf("%s (%s, %s)", p.Name, p.Outcome, durText(p.DurationMs)))
	}
	phaseText := "no phases recorded"
	if len(phases) > 0 {
		phaseText = "phases in order: " + strings.Join(phases, ", ")
	}
	measured := func(name string, got *int64, target int64) string {
		if got == nil {
			return fmt.Sprintf("%s not measured (target %s)", name, durText(target))
		}
		return fmt.Sprintf("%s %s against a target of %s", name, durText(*got), durText(target))
	}
	testing := measured("RTO", r.Measured.RTOMs, r.Targets.RTOMs) + "; " + measured("RPO", r.Measured.RPOMs, r.Targets.RPOMs)
	if g := r.Measured.WorstGapMs; g != nil {
		testing += fmt.Sprintf("; worst gap between backups %s", durText(*g))
	}
	passed := 0
	for _, c := range r.Checks {
		if c.Outcome == CheckPass {
			passed++
		}
	}
	return []HIPAARow{
		{Section: "§164.308(a)(7)(ii)(B)", Standard: "Disaster recovery plan (R)", Evidence: fmt.Sprintf("drill %s %s; verdict %s", r.Drill, restored, verdict)},
		{Section: "§164.308(a)(7)(ii)(C)", Standard: "Emergency mode operation plan (R)", Evidence: phaseText},
		{Section: "§164.308(a)(7)(ii)(D)", Standard: "Testing and revision procedures (A)", Evidence: testing + "; verdict " + verdict},
		{Section: "§164.310(d)(2)(iv)", Standard: "Data backup and storage (A): a retrievable, exact copy", Evidence: fmt.Sprintf("%d of %d verification checks passed after the restore", passed, len(r.Checks))},
		{Section: "§164.312(c)(1), (c)(2)", Standard: "Integrity; mechanism to authenticate ePHI (A)", Evidence: "this report is canonical JSON signed with Ed25519 and stored write-once; any change fails lifeboat report verify"},
	}
}
