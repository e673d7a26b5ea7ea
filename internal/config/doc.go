// Package config loads and validates lifeboat's configuration objects.
//
// Everything a user writes is a Kubernetes-style object with apiVersion
// lifeboat.dev/v1alpha1, a kind, metadata (a name, optional labels and
// annotations) and a spec, so that the same files can later be served as
// custom resources. The kinds are Store, KeyProvider, BackupPlan,
// RotationPolicy, Drill and Schedule; docs/config.md describes every field.
// One file may hold several objects separated by "---".
//
// Parse reads one file's objects; LoadPaths reads files and directories and
// checks the objects together, returning a Set. Each document goes through
// four steps, and the first that finds problems ends its checking:
//
//  1. apiVersion and kind must be known.
//  2. The document must have the shape of its kind: no unknown fields
//     (reported with a suggestion when a known field is close), no repeated
//     keys, lists where lists belong, durations and times that parse.
//  3. It is decoded into the kind's struct.
//  4. Its values must make sense: required fields, enumerations, names,
//     URLs, cron expressions, time zones, exactly-one-of rules. Defaults are
//     filled in here, so callers never see an empty field that has one.
//
// LoadPaths then checks across all files: each name is used once per kind,
// and every reference (a plan's store and key provider, a schedule's
// target, ...) names an object that exists and fits.
//
// Every problem is an *Error naming the file, line, column and field path
// (such as spec.sources[1].etcd.endpoints[0]); Parse and LoadPaths return all
// of them at once as an ErrorList, sorted by file and line, so a user fixes
// a configuration in one pass. What is allowed but questionable (a schedule
// firing more often than once a minute) is a Warning in Set.Warnings, with
// the same position and field; warnings never make loading fail.
//
// Configuration holds no secrets: credentials and key material come from
// files named in the configuration, the environment, or a provider's own
// credential chain. Error messages may quote configuration values for that
// reason, with one exception: URLs are never quoted, and a URL carrying
// credentials is refused.
package config
