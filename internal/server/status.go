package server

import (
	"context"
	"slices"
	"time"
)

// StatusSource gives the status page and /api/status their data. The
// service implements it from its schedules, run history, catalog and
// probes; it must return quickly (no store round trip per call) and put
// nothing secret or PHI in any field: the page is read-only but served to
// whoever can reach the port.
type StatusSource interface {
	Status(ctx context.Context) Status
}

// Status is what the status page shows, and what /api/status returns as
// JSON. Durations are time.Duration values, so they are integers of
// nanoseconds in JSON (the field names end in "Ns").
//
// The handler fills the derived fields before rendering: GeneratedAt when
// zero (the server's clock), PlanStatus.LiveRPO from NewestPointInTime and
// KeyStatus.Age from Created, both relative to GeneratedAt.
type Status struct {
	GeneratedAt time.Time `json:"generatedAt"`
	// Leader is true while this replica holds the lease and runs the
	// schedules; Identity names the replica (the pod name).
	Leader   bool   `json:"leader"`
	Identity string `json:"identity,omitempty"`
	// ConfigValid is false when the last configuration load failed;
	// ConfigError is its error, already free of secrets.
	ConfigValid bool   `json:"configValid"`
	ConfigError string `json:"configError,omitempty"`

	Schedules []ScheduleStatus `json:"schedules"`
	Plans     []PlanStatus     `json:"plans"`
	Drills    []DrillStatus    `json:"drills"`
	Keys      []KeyStatus      `json:"keys"`
	Stores    []StoreStatus    `json:"stores"`
	// Audit is this replica's audit log stream; nil without an AuditLog.
	Audit *AuditStatus `json:"audit,omitempty"`
}

// ScheduleStatus is one Schedule object and its run history.
type ScheduleStatus struct {
	Name string `json:"name"`
	// Kind is what the schedule runs: "backup", "rotation" or "drill";
	// Target names the BackupPlan, RotationPolicy or Drill.
	Kind      string `json:"kind"`
	Target    string `json:"target"`
	Cron      string `json:"cron"`
	TimeZone  string `json:"timeZone,omitempty"`
	Suspended bool   `json:"suspended,omitempty"`
	// NextRun is the next tick (zero when suspended).
	NextRun time.Time `json:"nextRun"`
	// LastRun is when the last finished run started; LastSuccess when the
	// last successful one finished (zero: never).
	LastRun     time.Time `json:"lastRun"`
	LastSuccess time.Time `json:"lastSuccess"`
	// LastOutcome is the last finished run's outcome: "success",
	// "failure", "partial", "missed" (the tick was skipped) or "abandoned";
	// empty when it never ran.
	LastOutcome string `json:"lastOutcome,omitempty"`
	LastRunID   string `json:"lastRunId,omitempty"`
	Running     bool   `json:"running,omitempty"`
}

// PlanStatus is one BackupPlan's newest verified backup against the RPO
// target of the drill that tests it.
type PlanStatus struct {
	Name  string `json:"name"`
	Store string `json:"store"`
	// NewestPointInTime is the point in time the newest verified backup
	// reflects (zero: no backup yet).
	NewestPointInTime time.Time `json:"newestPointInTime"`
	// LiveRPO is GeneratedAt minus NewestPointInTime, set by the handler.
	LiveRPO time.Duration `json:"liveRpoNs"`
	// Target is the RPO target (targets.rpo) of TargetDrill, a drill of
	// this plan; 0 when no drill of the plan sets one.
	Target      time.Duration `json:"targetNs"`
	TargetDrill string        `json:"targetDrill,omitempty"`
}

// DrillStatus is one Drill's last run.
type DrillStatus struct {
	Name    string    `json:"name"`
	LastRun time.Time `json:"lastRun"`
	// Verdict is the last run's verdict, "pass" or "fail"; empty when the
	// drill never ran.
	Verdict   string        `json:"verdict,omitempty"`
	RTO       time.Duration `json:"rtoNs"`
	RPO       time.Duration `json:"rpoNs"`
	WorstGap  time.Duration `json:"worstGapNs"`
	RTOTarget time.Duration `json:"rtoTargetNs"`
	RPOTarget time.Duration `json:"rpoTargetNs"`
	// Phases break the RTO down, in order.
	Phases []Phase `json:"phases,omitempty"`
	// ReportKey is the store key of the signed report; ReportURL, when
	// set, is where a browser can read it.
	ReportKey string `json:"reportKey,omitempty"`
	ReportURL string `json:"reportUrl,omitempty"`
}

// Phase is one timed phase of a drill.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"durationNs"`
}

// KeyStatus is one KeyProvider's primary KEK version.
type KeyStatus struct {
	Provider string    `json:"provider"`
	Primary  string    `json:"primary"`
	Created  time.Time `json:"created"`
	// Age is GeneratedAt minus Created, set by the handler.
	Age time.Duration `json:"ageNs"`
	// RotationPeriod is how often a RotationPolicy rotates the key; 0 when
	// no schedule rotates it.
	RotationPeriod time.Duration `json:"rotationPeriodNs"`
}

// StoreStatus is one Store's last probe.
type StoreStatus struct {
	Name      string `json:"name"`
	Reachable bool   `json:"reachable"`
	// Error is the last probe's error, already free of secrets.
	Error string `json:"error,omitempty"`
}

// AuditStatus is this replica's audit log stream (docs/audit.md).
type AuditStatus struct {
	Log    string `json:"log"`
	Stream string `json:"stream"`
	// Mode is "webhook" or "file".
	Mode string `json:"mode"`
	// Receiving is true while the intake runs; Error says why not.
	Receiving bool   `json:"receiving"`
	Error     string `json:"error,omitempty"`
	// WALEvents waiting to be sealed, the oldest received at OldestUnsealed.
	WALEvents      int64     `json:"walEvents"`
	OldestUnsealed time.Time `json:"oldestUnsealed,omitzero"`
	// HeadSeq is the newest committed segment, sealed at LastSealed, whose
	// newest event is at LastEvent.
	HeadSeq    int64     `json:"headSeq"`
	LastSealed time.Time `json:"lastSealed,omitzero"`
	LastEvent  time.Time `json:"lastEvent,omitzero"`
}

// derive fills the fields the handler computes.
func (s *Status) derive(now time.Time) {
	if s.GeneratedAt.IsZero() {
		s.GeneratedAt = now
	}
	s.GeneratedAt = s.GeneratedAt.UTC()
	// Empty lists are [] in JSON, not null.
	if s.Schedules == nil {
		s.Schedules = []ScheduleStatus{}
	}
	if s.Plans == nil {
		s.Plans = []PlanStatus{}
	}
	if s.Drills == nil {
		s.Drills = []DrillStatus{}
	}
	if s.Keys == nil {
		s.Keys = []KeyStatus{}
	}
	if s.Stores == nil {
		s.Stores = []StoreStatus{}
	}
	// The source may hand out slices it keeps: write only to copies.
	s.Plans = slices.Clone(s.Plans)
	s.Keys = slices.Clone(s.Keys)
	for i := range s.Plans {
		p := &s.Plans[i]
		p.LiveRPO = 0
		if !p.NewestPointInTime.IsZero() {
			p.LiveRPO = s.GeneratedAt.Sub(p.NewestPointInTime)
		}
	}
	for i := range s.Keys {
		k := &s.Keys[i]
		k.Age = 0
		if !k.Created.IsZero() {
			k.Age = s.GeneratedAt.Sub(k.Created)
		}
	}
}
