package certmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// certmgr's part of a group is its device identities. An AWS IoT
// certificate id is the SHA-256 of the certificate's DER, so when a group
// device's thing name is registered here, the group's CertificateArn must name
// that same certificate. A mismatch means the device would be admitted with
// one certificate here and another in the cloud: the deployment is refused,
// naming the certificate to put in the group. (The group's core thing is
// checked by the deployagent before any daemon is asked.)

// certIDOf returns the 64-hex id of an AWS IoT certificate ARN
// (^arn:aws[a-z-]*:iot:[^:]*:[^:]*:cert/([0-9a-f]{64})$, lower case), or
// "". By hand: a compiled regexp costs heap in every process of ggd.
func certIDOf(a string) string {
	parts := strings.Split(a, ":")
	if len(parts) != 6 || parts[0] != "arn" || !strings.HasPrefix(parts[1], "aws") || parts[2] != "iot" {
		return ""
	}
	for _, c := range parts[1][3:] {
		if !(c >= 'a' && c <= 'z' || c == '-') {
			return ""
		}
	}
	id, ok := strings.CutPrefix(parts[5], "cert/")
	if !ok || len(id) != 64 {
		return ""
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	return id
}

// followGroup checks the group in force and answers later deployments.
func (s *Service) followGroup() error {
	g, id, err := deployment.LoadCurrent(s.env.Root)
	if err != nil {
		return err
	}
	if g != nil {
		if err := s.checkGroup(g); err != nil {
			// The group was accepted before; a device re-registered since
			// then is worth a warning, not a refusal to start.
			s.env.Log.Warn("group in force no longer matches the device registry", "deployment", id, "err", err)
		}
		s.env.Log.Info("group in force", "deployment", id, "core", g.CoreThingName())
	}
	stop, err := deployment.Serve(s.env, s.applyGroup, deployment.WithPrepare(s.prepareGroup))
	if err != nil {
		return err
	}
	s.stopFollowing = stop
	return nil
}

// prepareGroup refuses a group whose device identities disagree with the
// registry before the deployagent commits it; certmgr stages nothing (the
// group's devices are not certmgr's to switch).
func (s *Service) prepareGroup(_ context.Context, g *groupdef.Group, _ string) error {
	if g == nil {
		return nil
	}
	return s.checkGroup(g)
}

// applyGroup checks again: a device may have been registered between
// PREPARE and APPLY.
func (s *Service) applyGroup(ctx context.Context, g *groupdef.Group, rollback bool) error {
	if g == nil || rollback {
		return nil
	}
	return s.checkGroup(g)
}

func (s *Service) checkGroup(g *groupdef.Group) error {
	var errs []error
	if g.Devices != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, d := range g.Devices.Devices {
			name, err := arn.ThingName(d.ThingArn)
			if err != nil {
				continue // groupdef validation reports it
			}
			reg, ok := s.devices.Get(name)
			if !ok {
				continue
			}
			id := certIDOf(strings.ToLower(d.CertificateArn))
			if id == "" {
				continue // not an AWS certificate id: nothing to compare
			}
			if id != reg.Fingerprint {
				errs = append(errs, fmt.Errorf("Devices[%d].CertificateArn: device %q is registered here with another certificate; its CertificateArn must end in cert/%s", i, name, reg.Fingerprint))
			}
		}
	}
	return errors.Join(errs...)
}
