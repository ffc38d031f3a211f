package secrets

import (
	"fmt"
	"slices"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/secrets/store"
)

// Name rules (Secrets Manager's): a name is 1 to 512 of letters, digits and
// /_+=.@-; a staging label 1 to 256 of the same; a version id 1 to 64 of
// letters, digits and '-'.
const (
	maxNameBytes      = 512
	maxLabelBytes     = 256
	maxVersionIDBytes = 64
)

func nameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/_+=.@-", c) >= 0
}

func checkName(kind, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%s is empty", kind)
	}
	if len(s) > max {
		return fmt.Errorf("%s of %d bytes is over the %d-byte limit", kind, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if !nameChar(s[i]) {
			return fmt.Errorf("%s %q: only letters, digits and /_+=.@- are allowed", kind, s)
		}
	}
	return nil
}

func checkVersionID(s string) error {
	if len(s) > maxVersionIDBytes {
		return fmt.Errorf("%d bytes is over the %d-byte limit", len(s), maxVersionIDBytes)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%q: only letters, digits and '-' are allowed", s)
		}
	}
	return nil
}

// secretARN is a parsed arn:<partition>:secretsmanager:<region>:<account>:secret:<id>.
type secretARN struct {
	full string
	// id is what follows "secret:"; name is id without the "-" and six
	// random characters Secrets Manager appends to every secret's ARN.
	id, name string
}

func parseSecretARN(s string) (secretARN, error) {
	a, err := arn.Parse(s)
	if err != nil {
		return secretARN{}, err
	}
	id, ok := strings.CutPrefix(a.Resource, "secret:")
	if a.Service != "secretsmanager" || a.Region == "" || a.Account == "" || !ok || id == "" {
		return secretARN{}, fmt.Errorf("%q is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)", s)
	}
	return secretARN{full: s, id: id, name: trimRandomSuffix(id)}, nil
}

// trimRandomSuffix drops "-XXXXXX" (six letters or digits) from the end of
// a secret's ARN id. Like Secrets Manager's own partial-ARN matching it
// cannot tell a name that ends that way from a suffix.
func trimRandomSuffix(id string) string {
	if len(id) < 8 || id[len(id)-7] != '-' {
		return id
	}
	for i := len(id) - 6; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return id
		}
	}
	return id[:len(id)-7]
}

// resource is one SecretsManagerSecretResourceData of the deployed group.
type resource struct {
	index int // in Resources.Resources, for messages
	id    string
	arn   secretARN
	// labels are the staging labels deployed: AWSCURRENT and
	// AdditionalStagingLabelsToDownload.
	labels []string
}

// matches says whether a function's SecretId names this resource: its full
// ARN, its ARN without the random suffix, the id after "secret:", or the
// secret's name.
func (r *resource) matches(secretID string) bool {
	switch secretID {
	case r.arn.full, r.arn.id, r.arn.name:
		return true
	}
	return strings.HasPrefix(secretID, "arn:") && secretID == strings.TrimSuffix(r.arn.full, r.arn.id)+r.arn.name
}

// stored finds the stored secret a resource names: the one put under its
// ARN, else one put by name (without an ARN) called its id or its name.
func (r *resource) stored(list []store.Secret) *store.Secret {
	for i := range list {
		if list[i].ARN == r.arn.full {
			return &list[i]
		}
	}
	for _, name := range []string{r.arn.id, r.arn.name} {
		for i := range list {
			if list[i].ARN == "" && list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// groupView is what the daemon keeps of the deployed group: its secret
// resources and who may read each.
type groupView struct {
	resources []*resource
	// callers maps each function's and connector's ARN in the group to
	// the ids of the secret resources it may read.
	callers map[string]map[string]bool
}

func newGroupView(g *groupdef.Group) *groupView {
	v := &groupView{callers: map[string]map[string]bool{}}
	if g == nil {
		return v
	}
	byID := map[string]*resource{}
	if g.Resources != nil {
		for i, r := range g.Resources.Resources {
			c := r.ResourceDataContainer
			if c == nil || c.SecretsManagerSecretResourceData == nil {
				continue
			}
			d := c.SecretsManagerSecretResourceData
			a, err := parseSecretARN(d.ARN)
			if err != nil {
				continue // the deployagent validated it; nothing to serve
			}
			res := &resource{index: i, id: r.Id, arn: a, labels: []string{store.Current}}
			for _, l := range d.AdditionalStagingLabelsToDownload {
				if l != "" && !slices.Contains(res.labels, l) {
					res.labels = append(res.labels, l)
				}
			}
			v.resources = append(v.resources, res)
			byID[r.Id] = res
		}
	}
	if g.Functions != nil {
		for _, f := range g.Functions.Functions {
			grants := map[string]bool{}
			if fc := f.FunctionConfiguration; fc != nil && fc.Environment != nil {
				for _, p := range fc.Environment.ResourceAccessPolicies {
					if byID[p.ResourceId] != nil {
						grants[p.ResourceId] = true
					}
				}
			}
			v.callers[f.FunctionArn] = grants
		}
	}
	// A connector reads the secrets its parameters name by resource id:
	// v1 connectors take a secret as "<Param>SecretArn" plus
	// "<Param>SecretArn-ResourceId".
	if g.Connectors != nil {
		for _, c := range g.Connectors.Connectors {
			grants := map[string]bool{}
			for k, val := range c.Parameters {
				if strings.HasSuffix(k, "-ResourceId") && byID[val] != nil {
					grants[val] = true
				}
			}
			v.callers[c.ConnectorArn] = grants
		}
	}
	return v
}

// find returns the resource a SecretId names.
func (v *groupView) find(secretID string) *resource {
	for _, r := range v.resources {
		if r.matches(secretID) {
			return r
		}
	}
	return nil
}

// readers returns the functions and connectors that may read r, sorted.
func (v *groupView) readers(r *resource) []string {
	var out []string
	for caller, grants := range v.callers {
		if grants[r.id] {
			out = append(out, caller)
		}
	}
	slices.Sort(out)
	return out
}

// usedBy returns the resources that name the stored secret sec.
func (v *groupView) usedBy(sec store.Secret, list []store.Secret) []*resource {
	var out []*resource
	for _, r := range v.resources {
		if s := r.stored(list); s != nil && s.Name == sec.Name {
			out = append(out, r)
		}
	}
	return out
}

// problems lists what the store lacks for the group: secrets it names that
// are not stored, labels no stored version has.
func (v *groupView) problems(list []store.Secret) []string {
	var out []string
	for _, r := range v.resources {
		at := fmt.Sprintf("Resources[%d] (Id %q)", r.index, r.id)
		sec := r.stored(list)
		if sec == nil {
			out = append(out, fmt.Sprintf("%s: secret %s is not in the local store; put it first (ggctl secret put %s --file F)", at, r.arn.full, r.arn.full))
			continue
		}
		if missing := missingLabels(r, *sec); len(missing) > 0 {
			out = append(out, fmt.Sprintf("%s: secret %q has no version labelled %s; put one with --label", at, sec.Name, strings.Join(missing, ", ")))
		}
	}
	return out
}

func missingLabels(r *resource, sec store.Secret) []string {
	have := sec.Labels()
	var out []string
	for _, l := range r.labels {
		if !slices.Contains(have, l) {
			out = append(out, l)
		}
	}
	return out
}
