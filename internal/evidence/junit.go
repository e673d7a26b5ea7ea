package evidence

import (
	"encoding/xml"
	"fmt"
	"time"
)

// junit types: the JUnit XML that CI systems (Jenkins, GitLab, GitHub
// Actions reporters) read.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Name    string       `xml:"name,attr"`
	Tests   int          `xml:"tests,attr"`
	Fails   int          `xml:"failures,attr"`
	Time    string       `xml:"time,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string          `xml:"name,attr"`
	Tests     int             `xml:"tests,attr"`
	Fails     int             `xml:"failures,attr"`
	Time      string          `xml:"time,attr"`
	Timestamp string          `xml:"timestamp,attr"`
	Props     []junitProperty `xml:"properties>property"`
	Cases     []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr,omitempty"`
	Failure   *junitFailure `xml:"failure"`
	Output    string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// RenderJUnit renders a drill report as JUnit XML (`drill run -o junit`):
// one test suite for the drill run, one test case per objective (RTO,
// RPO) and per check, failed when the report says so. It carries the
// report's key and signer so that a CI result leads back to the signed
// evidence; the XML itself is not evidence.
func RenderJUnit(r Report, reportKey string) ([]byte, error) {
	secs := func(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }
	suite := junitSuite{
		Name: "lifeboat drill " + r.Drill, Timestamp: r.Started.UTC().Format(time.RFC3339),
		Time: secs(r.Finished.Sub(r.Started).Milliseconds()),
		Props: []junitProperty{
			{"runId", r.RunID}, {"backupId", r.BackupID}, {"verdict", r.Verdict},
			{"report", reportKey}, {"signer", r.Signer},
		},
	}
	objective := func(name string, target int64, got *int64) {
		c := junitCase{Name: name, ClassName: "lifeboat.drill." + r.Drill + ".objectives"}
		switch {
		case got == nil:
			c.Failure = &junitFailure{Type: "not measured", Message: fmt.Sprintf("%s not measured (target %s)", name, time.Duration(target)*time.Millisecond)}
		case *got > target:
			c.Failure = &junitFailure{Type: "target missed", Message: fmt.Sprintf("%s %s exceeds the target %s", name, time.Duration(*got)*time.Millisecond, time.Duration(target)*time.Millisecond)}
		default:
			c.Output = fmt.Sprintf("%s %s within the target %s", name, time.Duration(*got)*time.Millisecond, time.Duration(target)*time.Millisecond)
		}
		if got != nil {
			c.Time = secs(*got)
		}
		suite.Cases = append(suite.Cases, c)
	}
	objective("RTO", r.Targets.RTOMs, r.Measured.RTOMs)
	objective("RPO", r.Targets.RPOMs, r.Measured.RPOMs)
	for _, ch := range r.Checks {
		c := junitCase{Name: ch.Name, ClassName: "lifeboat.drill." + r.Drill + ".checks"}
		if ch.Outcome != CheckPass {
			c.Failure = &junitFailure{Type: ch.Outcome, Message: ch.Detail}
		} else {
			c.Output = ch.Detail
		}
		suite.Cases = append(suite.Cases, c)
	}
	for _, c := range suite.Cases {
		suite.Tests++
		if c.Failure != nil {
			suite.Fails++
		}
	}
	doc := junitSuites{Name: "lifeboat", Tests: suite.Tests, Fails: suite.Fails, Time: suite.Time, Suites: []junitSuite{suite}}
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render junit: %w", err)
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}
