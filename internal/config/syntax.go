package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// This file holds the syntax rules of names and other strings that appear
// in configuration values. Each check returns a lowercase message for the
// caller to attach to a field, or nil.

func isAlnumLower(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isAlnumLower(c) || c >= 'A' && c <= 'Z' }

// checkDNSLabel checks a DNS-1123 label: the rule of object names,
// namespaces and references.
func checkDNSLabel(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", s)
	}
	if !isDNSLabel(s) {
		return fmt.Errorf("%q is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit", s)
	}
	return nil
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || !isAlnumLower(s[0]) || !isAlnumLower(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnumLower(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// checkDNSSubdomain checks a DNS-1123 subdomain: dot-separated labels, at
// most 253 characters.
func checkDNSSubdomain(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%q is not a valid DNS subdomain: want 1 to 253 characters", s)
	}
	for _, label := range strings.Split(s, ".") {
		if !isDNSLabel(label) {
			return fmt.Errorf("%q is not a valid DNS subdomain: use dot-separated lowercase names of letters, digits and '-'", s)
		}
	}
	return nil
}

// checkQualifiedName checks a Kubernetes label or annotation key: an
// optional DNS subdomain prefix and "/", then a name of at most 63
// characters of letters, digits, '-', '_' and '.', starting and ending with
// a letter or digit.
func checkQualifiedName(s string) error {
	name := s
	if prefix, rest, ok := strings.Cut(s, "/"); ok {
		if checkDNSSubdomain(prefix) != nil {
			return fmt.Errorf("%q has an invalid prefix: want a DNS subdomain before '/'", s)
		}
		name = rest
	}
	if name == "" || len(name) > 63 || !isLabelValue(name) {
		return fmt.Errorf("%q is not a valid key: want an optional DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", s)
	}
	return nil
}

// checkLabelValue checks a Kubernetes label value: empty, or at most 63
// letters, digits, '-', '_' and '.', starting and ending with a letter or
// digit.
func checkLabelValue(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > 63 || !isLabelValue(s) {
		return fmt.Errorf("%q is not a valid label value: want at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", s)
	}
	return nil
}

func isLabelValue(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// checkLabelSelector checks the syntax of a Kubernetes label selector:
// comma-separated requirements, each one of "key", "!key", "key=value",
// "key==value", "key!=value", "key in (v1,v2)" and "key notin (v1,v2)".
func checkLabelSelector(s string) error {
	toks, err := selectorTokens(s)
	if err != nil {
		return err
	}
	if len(toks) == 0 {
		return errors.New("empty label selector")
	}
	bad := func() error {
		return fmt.Errorf("invalid label selector %q: want requirements such as app=web, tier!=cache, env in (prod,staging), !canary", s)
	}
	for len(toks) > 0 {
		// One requirement.
		switch {
		case toks[0] == "!":
			if len(toks) < 2 || checkQualifiedName(toks[1]) != nil {
				return bad()
			}
			toks = toks[2:]
		case checkQualifiedName(toks[0]) == nil:
			key := toks[0]
			toks = toks[1:]
			if len(toks) == 0 || toks[0] == "," {
				break
			}
			switch op := toks[0]; op {
			case "=", "==", "!=":
				toks = toks[1:]
				if len(toks) > 0 && toks[0] != "," {
					if checkLabelValue(toks[0]) != nil {
						return fmt.Errorf("invalid label selector %q: %q is not a valid value for %s", s, toks[0], key)
					}
					toks = toks[1:]
				}
			case "in", "notin":
				toks = toks[1:]
				if len(toks) == 0 || toks[0] != "(" {
					return bad()
				}
				toks = toks[1:]
				for {
					if len(toks) == 0 || toks[0] == "," || toks[0] == ")" {
						return bad() // a set needs values, and no empty ones
					}
					if checkLabelValue(toks[0]) != nil {
						return bad()
					}
					toks = toks[1:]
					if len(toks) == 0 {
						return bad()
					}
					sep := toks[0]
					toks = toks[1:]
					if sep == ")" {
						break
					}
					if sep != "," {
						return bad()
					}
				}
			default:
				return bad()
			}
		default:
			return bad()
		}
		if len(toks) > 0 {
			if toks[0] != "," || len(toks) == 1 {
				return bad()
			}
			toks = toks[1:]
		}
	}
	return nil
}

// selectorTokens splits a label selector into words and the operators
// "!", "=", "==", "!=", "(", ")" and ",".
func selectorTokens(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '!' && i+1 < len(s) && s[i+1] == '=', c == '=' && i+1 < len(s) && s[i+1] == '=':
			toks = append(toks, s[i:i+2])
			i += 2
		case c == '!' || c == '=' || c == '(' || c == ')' || c == ',':
			toks = append(toks, s[i:i+1])
			i++
		case isAlnum(c) || c == '-' || c == '_' || c == '.' || c == '/':
			j := i
			for j < len(s) && (isAlnum(s[j]) || s[j] == '-' || s[j] == '_' || s[j] == '.' || s[j] == '/') {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			return nil, fmt.Errorf("invalid label selector %q: unexpected character %q", s, c)
		}
	}
	return toks, nil
}

// checkResource checks a resource named as "resource" or "resource.group",
// such as "events" or "events.events.k8s.io".
func checkResource(s string) error {
	if checkDNSSubdomain(s) != nil {
		return fmt.Errorf("%q is not a resource: want a lowercase plural resource name, optionally followed by .group, such as events or events.events.k8s.io", s)
	}
	return nil
}

// checkURL checks an http or https URL with a host. The message does not
// repeat the URL, in case it holds something that should not be logged.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL with a host")
	}
	if u.User != nil {
		return errors.New("must not contain credentials; they come from files, the environment or the provider's credential chain")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not have a query or fragment")
	}
	return nil
}

// checkBucket checks an S3 bucket name.
func checkBucket(s string) error {
	if len(s) < 3 || len(s) > 63 || !isAlnumLower(s[0]) || !isAlnumLower(s[len(s)-1]) || strings.Contains(s, "..") {
		return fmt.Errorf("%q is not a valid S3 bucket name: want 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnumLower(c) && c != '-' && c != '.' {
			return fmt.Errorf("%q is not a valid S3 bucket name: want 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit", s)
		}
	}
	return nil
}

// checkPrefix checks a store prefix against the key rules of
// docs/format.md §1: segments of [A-Za-z0-9._-] separated by '/', none
// empty, "." or "..", no leading or trailing '/'.
func checkPrefix(s string) error {
	bad := fmt.Errorf("%q is not a valid prefix: want '/'-separated segments of letters, digits, '.', '_' and '-', without a leading or trailing '/' and without empty, '.' or '..' segments", s)
	if len(s) > 512 {
		return fmt.Errorf("prefix is longer than 512 characters")
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return bad
			}
		}
	}
	return nil
}

// checkBackupID checks a backup ID as docs/format.md defines it: 1 to 128
// bytes of [A-Za-z0-9._-], not "." or "..".
func checkBackupID(s string) error {
	bad := fmt.Errorf("%q is not a backup ID: want 1 to 128 letters, digits, '.', '_' and '-'", s)
	if s == "" || len(s) > 128 || s == "." || s == ".." {
		return bad
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return bad
		}
	}
	return nil
}

// checkFilePath checks a path to a local file: not blank, no NUL byte.
func checkFilePath(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("want a file path")
	}
	if strings.ContainsRune(s, 0) {
		return errors.New("contains a NUL byte")
	}
	return nil
}

// checkRegion checks a cloud region name such as "us-east-1".
func checkRegion(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnumLower(c) && c != '-' {
			return fmt.Errorf("%q is not a region: want lowercase letters, digits and '-', such as us-east-1", s)
		}
	}
	return nil
}

// checkVaultName checks a Vault key name or mount path segment list:
// no leading or trailing '/', no empty segments, no whitespace.
func checkVaultPath(s string) error {
	if s == "" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%q is not a valid Vault path: want '/'-separated names without a leading or trailing '/'", s)
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q is not a valid Vault path: '.' and '..' segments are not allowed", s)
		}
	}
	return nil
}

// checkAPIVersion checks a Kubernetes apiVersion, "version" or
// "group/version".
func checkAPIVersion(s string) error {
	group, version, hasGroup := strings.Cut(s, "/")
	if !hasGroup {
		group, version = "", s
	}
	if (hasGroup && checkDNSSubdomain(group) != nil) || !isDNSLabel(version) {
		return fmt.Errorf("%q is not an apiVersion: want \"version\" or \"group/version\", such as v1 or apps/v1", s)
	}
	return nil
}

// checkKindName checks a Kubernetes kind such as "Deployment".
func checkKindName(s string) error {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return fmt.Errorf("%q is not a kind: want a name starting with an uppercase letter, such as Deployment", s)
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return fmt.Errorf("%q is not a kind: want letters and digits only, such as Deployment", s)
		}
	}
	return nil
}

// checkObjectName checks the name of a Kubernetes object. Names differ by
// kind (RBAC names may hold ':'), so only what no kind allows is refused.
func checkObjectName(s string) error {
	if s == "" || len(s) > 253 || strings.ContainsAny(s, "/% \t\r\n") || s == "." || s == ".." {
		return fmt.Errorf("%q is not a valid object name", s)
	}
	return nil
}

// checkSecretKey checks a key of a Secret's data: letters, digits, '-',
// '_' and '.'.
func checkSecretKey(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%q is not a valid Secret key", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("%q is not a valid Secret key: want letters, digits, '-', '_' and '.'", s)
		}
	}
	return nil
}
